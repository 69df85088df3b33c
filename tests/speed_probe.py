"""The suite's measure of how fast this machine trains (tests/conftest.py, measure_speed): the demo's own calibration
(xeontl.experiment.train.calibration: one step of the demo profile's model, its forward and its head's gradients,
on the demo's batch) at the precision the demo picks here and with one thread, as each rank of the quick start runs.
Run with the Python that has TensorFlow (the venv after `invoke setup --native`): prints one JSON line.

The reference's value is in committed records: metrics.json `calibration.seconds_per_step` of the reference
machine's quick-start runs (conftest.SPEED_REFERENCE), measured by the same function."""

import json
import time

t0 = time.perf_counter()
from xeontl.experiment import config, model, runtime, train  # noqa: E402 - timed: TensorFlow's import is part of it

cfg = config.resolve("demo")
threads = runtime.configure_threads(1, 1)
precision = runtime.configure_precision(cfg["precision"], cfg["amp"])
fitted, _, _ = model.build(cfg, model.describe_weights(cfg))
cal = train.calibration(fitted, cfg, steps=1)
print(json.dumps({"seconds_per_step": cal["seconds_per_step"], "precision": precision["precision"],
                  "threads": threads, "probe_s": round(time.perf_counter() - t0, 1)}))
