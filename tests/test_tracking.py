"""tracking.py: what a run's files hold (metrics.jsonl rows beside TensorBoard events, summary.json)."""

from __future__ import annotations

import json
import math

from conftest import events
from nnlab.config.schema import flatten
from nnlab.run_files.tracking import Tracker, record_failure, write_summary


def test_rows_go_to_tensorboard_and_metrics_jsonl_alike(tmp_path):
    tracker = Tracker(tmp_path)
    tracker.scalars(3, {"loss/train": 0.5, "acc/train": 0.75}, epoch=1)
    tracker.rows([(4, {"step/loss": math.nan}), (5, {"step/loss": math.inf})], epoch=2)
    tracker.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": 3, "epoch": 1, "loss/train": 0.5, "acc/train": 0.75}
    assert rows[1]["step/loss"] == "nan" and rows[2]["step/loss"] == "inf"  # JSON has no NaN
    acc = events(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("acc/train")] == [(3, 0.75)]


def test_flatten_and_summaries(tmp_path):
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": "[1, 2]", "d": "None"}
    write_summary(tmp_path, {"status": "ok", "metrics": {"acc/test": 0.9}})
    record_failure(tmp_path, RuntimeError("boom"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["metrics"] == {"acc/test": 0.9} and "boom" in summary["error"]
    assert "RuntimeError: boom" in (tmp_path / "error.txt").read_text()
