"""tracking.py: what a run's files hold (metrics.jsonl rows beside TensorBoard events, summary.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2**40),
            st.dictionaries(
                st.text(alphabet="abcdefghij/_0123456789", min_size=1, max_size=30),
                st.floats(allow_nan=True, allow_infinity=True),
                min_size=1,
                max_size=4,
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_event_files_read_back_as_tensorboard_reads_them(rows):
    """run_files.events writes TensorBoard's records itself (a step's scalars encoded by hand, the checksums
    CRC-32C): TensorBoard's own reader checks each record and reads back every value as float32 (beyond its
    range: ±inf), at its step, whatever the tags, values and steps."""
    import os
    import tempfile

    import numpy as np
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as theirs

    from nnlab.run_files.events import EventFile, masked_crc32c

    for data in (b"", os.urandom(7), os.urandom(100)):
        assert masked_crc32c(data) == theirs(data)
    with tempfile.TemporaryDirectory() as folder:
        with EventFile(folder, purge_step=3) as f:
            for step, values in rows:
                f.scalars(step, values)
        read = [e for e in LegacyEventFileLoader(str(f.path)).Load() if e.HasField("summary")]
    assert [e.step for e in read] == [step for step, _ in rows]
    for event, (_, values) in zip(read, rows):
        got = {v.tag: v.simple_value for v in event.summary.value}
        assert list(got) == list(values)
        with np.errstate(over="ignore"):
            want = {t: np.float32(v) for t, v in values.items()}
        assert all((math.isnan(got[t]) and math.isnan(want[t])) or got[t] == want[t] for t in values)


@settings(max_examples=60, deadline=None)
@given(
    step=st.integers(0, 2**40),
    epoch=st.one_of(st.none(), st.integers(0, 10**6)),
    values=st.dictionaries(
        st.one_of(st.sampled_from(["step", "epoch", "loss/train", 'a"b', "é"]), st.text(min_size=1, max_size=12)),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**12), 10**12), st.booleans()),
        min_size=1,
        max_size=5,
    ),
)
def test_metrics_rows_are_the_json_of_their_values(step, epoch, values):
    """Tracker.rows formats metrics.jsonl lines itself: each is json.dumps of its row, NaN and infinities as
    strings (JSON has no such numbers), whatever the keys (quotes, unicode) and values."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tracker = Tracker(folder)
        tracker.rows([(step, values)], epoch)
        tracker.close()
        line = (Path(folder) / "metrics.jsonl").read_text()
    row = {"step": step, **({"epoch": epoch} if epoch is not None else {}), **values}
    expected = {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
    assert line == json.dumps(expected) + "\n"
