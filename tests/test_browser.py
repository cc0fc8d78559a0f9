"""TensorBoard as a user sees it: a real server and headless Chromium (scripts/screenshots.py, which also
makes the README's pictures) on a small seed sweep and on runs alone, asserting on what the dashboards
show. Skipped where there is no browser (playwright and a Chromium: Debian's `chromium`; .ci/run installs it)."""

from __future__ import annotations

import time

import pytest

from conftest import TINY, nnlab
from screenshots import TABS, can_look, look

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not can_look(), reason="no browser: playwright and a Chromium are needed"),
]
DIAGNOSTICS = ("start", "stats", "step", "throughput", "time")


def test_tensorboard_opens_on_the_comparison(tmp_path):
    sweep = tmp_path / "s"
    out = nnlab(
        "train", "-m", *TINY, "optimizer=sgd,adam", "trainer.seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    seen = look(sweep, tmp_path / "shots")
    groups = seen["groups"]  # TIME SERIES, top to bottom: the learning curves before every diagnostic
    assert groups[0] == "acc" and groups.index("loss") < min(groups.index(g) for g in DIAGNOSTICS), groups
    assert seen["categories"][0] == "1 learning curves (per epoch)", seen["categories"]  # CUSTOM SCALARS
    # HPARAMS: the two swept settings and nothing constant, then the scores a comparison reads
    assert seen["columns"][2:7] == ["optimizer", "trainer.seed", "acc/test", "acc/val", "loss/val"], seen["columns"]
    assert {"mean/optimizer=sgd", "mean/optimizer=adam", "overview"} <= set(seen["runs"])  # a band per setting
    for name in TABS.values():
        assert (tmp_path / "shots" / name).stat().st_size > 10_000  # a picture, not a blank page


def test_runs_alone_show_what_differs(tmp_path):
    for optimizer in ("sgd", "adam"):
        assert nnlab("train", *TINY, f"optimizer={optimizer}", cwd=tmp_path).returncode == 0
        time.sleep(1.1)  # another second: another folder
    seen = look(tmp_path / "outputs" / "runs")
    # what differs, not the constant data, model, ...: the optimizer and its rate (each one's own default)
    assert seen["columns"][2:5] == ["optimizer", "optimizer.lr", "acc/test"], seen["columns"]
    assert sum(run.startswith("20") and "optimizer=" in run for run in seen["runs"]) == 2  # named by what they set
