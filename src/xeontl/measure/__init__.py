"""Measuring the machine: probes, `invoke bench` (and its two-stack side by side), `--check-host`, oneDNN and AMX
called directly, the smoke run."""
