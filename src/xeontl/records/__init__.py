"""What a run leaves and what is judged on it: provenance, the claims, the committed references, report.md."""
