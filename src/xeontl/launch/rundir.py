"""The files of a run dir that more than one party writes, read and written here only: metrics.json (the trainer
writes it, the launcher settles its status when a rank died first, the report adds the reference verdict)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from xeontl.common import records

METRICS = "metrics.json"


# What a staged run dir's metrics.json says until the trainer writes its own: a run whose disk fills, or whose ranks
# never start, is still marked failed (the trainer and the launcher's settle replace it).
PLACEHOLDER = {"status": "failed", "error": "the run has not finished: the launcher's record until the trainer's own"}


def metrics_schema() -> dict:
    return records.schema("metrics")


def validate_metrics(metrics: dict) -> None:
    """metrics.json against what the code can write (schemas/metrics.schema.json); raises jsonschema's
    ValidationError naming the field."""
    import jsonschema

    jsonschema.validate(json.loads(json.dumps(metrics, default=str)), metrics_schema())


def read_metrics(run: Path) -> dict:
    """The run's metrics.json as its schema allows it ({} before anything wrote one), or one line naming the field."""
    return records.read_record(Path(run) / METRICS, "metrics", missing={})


def write_metrics(run: Path, metrics: dict) -> None:
    """metrics.json, whole or not at all (written beside, then renamed: a reader never sees half a file)."""
    try:
        validate_metrics(metrics)
    except Exception as e:  # a bug of the writer, not the user's: the run's record is still kept whole
        print(f"xeontl: warning: metrics.json departs from its schema ({type(e).__name__}: "
              f"{str(e).splitlines()[0]})", file=sys.stderr)
    path = Path(run) / METRICS
    tmp = path.with_name(f".{METRICS}.tmp")
    tmp.write_text(json.dumps(metrics, indent=1, default=str))
    os.replace(tmp, path)


def update_metrics(run: Path, **fields) -> dict:
    metrics = {**read_metrics(run), **fields}
    write_metrics(run, metrics)
    return metrics
