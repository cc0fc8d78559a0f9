"""What a run folder's records hold, as every reader takes them: one trust boundary for the files nnlab
reads back (summary.json: read_summary; metrics.jsonl: read_rows). A file is data: a torn, damaged or
crafted one is skipped or typed, never passed on to crash a reader.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_rows(path: str | Path, having: str | None = None) -> list[dict]:
    """The rows of a metrics.jsonl; a last line torn by a crash or a full disk (no newline, or not JSON)
    is left out, as is any line that is not a JSON object. `having`: only the rows with that key (the
    epoch rows: "loss/train"), the others not even parsed (most rows are a step's loss and gradient norm)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows, mark = [], None if having is None else json.dumps(having)
    for line in path.read_text(errors="replace").split("\n")[:-1]:  # the part after the last newline is torn
        if mark is not None and mark not in line:
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and (having is None or having in row):
            rows.append(row)
    return rows


def read_summary(folder: str | Path) -> dict | None:
    """FOLDER/summary.json as every reader takes it (one trust boundary): None where it is missing, torn, not
    JSON, nested past reason or not an object; else the object with the fields nnlab reads typed as nnlab
    writes them: `status` a string, `metrics` numbers by name, `alarms` objects with a string `name`, the
    counts whole numbers or None, `hparams` plain values, `loss_curve` a string or None. A field of another type is dropped (or emptied),
    never passed on to crash a reader; strings keep their text (the terminal shows them through console.shown)."""
    try:
        summary = json.loads(Path(folder, "summary.json").read_text(errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(summary, dict):
        return None
    number = (int, float)
    summary["status"] = summary["status"] if isinstance(summary.get("status"), str) else None
    metrics = summary.get("metrics")
    summary["metrics"] = (
        {k: v for k, v in metrics.items() if isinstance(v, number) and not isinstance(v, bool)}
        if isinstance(metrics, dict)
        else {}
    )
    alarms = summary.get("alarms")
    summary["alarms"] = (
        [a for a in alarms if isinstance(a, dict) and isinstance(a.get("name"), str)]
        if isinstance(alarms, list)
        else []
    )
    for key in ("epochs_run", "steps", "best_epoch", "seed"):
        if not (isinstance(summary.get(key), int) and not isinstance(summary.get(key), bool)):
            summary[key] = None
    for key in ("hparams", "model", "checkpoints"):
        if key in summary and not isinstance(summary[key], dict):
            summary[key] = {}
    hparams = summary.get("hparams") or {}
    summary["hparams"] = {k: v for k, v in hparams.items() if v is None or isinstance(v, (str, int, float, bool))}
    if not isinstance(summary.get("loss_curve"), str):
        summary["loss_curve"] = None
    if not isinstance(summary.get("stopped_early"), bool):
        summary["stopped_early"] = False
    if not isinstance(summary.get("wall_time_s"), number):
        summary["wall_time_s"] = None
    return summary
