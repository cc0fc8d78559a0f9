"""hydra.launcher.workers: a sweep's groups trained at once, each in a process of its own forked from the
launcher's (hydra_plugins/nnlab_launcher/workers.py): the same numbers as one process, a dead group's
process loses only its members, a signal saves every group's, and resume=auto finishes the sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, nnlab

SWEEP = ["-m", *TINY, "trainer.seed=range(4)", "hydra.launcher.max_members=2"]  # two stacks of two


def _ended(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def test_groups_in_processes_compute_what_one_process_computes(tmp_path):
    outs = {}
    for workers in (1, 2):
        outs[workers] = nnlab(
            "train",
            *SWEEP,
            f"hydra.launcher.workers={workers}",
            f"hydra.sweep.dir={tmp_path / str(workers)}",
            cwd=tmp_path,
        )
        assert outs[workers].returncode == 0, outs[workers].stderr[-2000:]
        assert "[1/2] 2 seeds as one stack" in outs[workers].stdout and "[2/2]" in outs[workers].stdout
    one, two = _ended(tmp_path / "1"), _ended(tmp_path / "2")
    assert sorted(one) == sorted(two) == [f"trainer.seed={s}" for s in range(4)]
    for name in one:
        assert two[name]["status"] == "ok"
        for key in ("metrics", "best_epoch", "steps", "initial_loss"):
            assert two[name][key] == one[name][key], (name, key)
        hydra = (tmp_path / "2" / name / ".hydra" / "hydra.yaml").read_text()
        assert "workers: 2" in hydra  # what ran, in the run's record
    assert (tmp_path / "2" / "report.md").exists()  # the sweep's closing, in the launcher's process


def test_auto_takes_one_process_per_core_where_a_sweep_has_groups_on_the_cpu(tmp_path):
    from omegaconf import OmegaConf

    from hydra_plugins.nnlab_launcher.workers import how_many

    cpu, cuda, stop = (
        OmegaConf.create({"trainer": {"device": d}, "sweep": {"on_failure": f}})
        for d, f in (("cpu", "continue"), ("cuda", "continue"), ("cpu", "stop"))
    )
    cores = os.cpu_count() or 1
    assert how_many("auto", [cpu, cpu], 1) == 1  # one group: this process
    assert how_many("auto", [cpu] * 8, 8) == min(cores, 8)
    assert how_many("auto", [cpu, cuda], 2) == 1  # a GPU's groups: one after another
    assert how_many("auto", [cpu, stop], 2) == 1  # sweep.on_failure=stop: the first failure ends the sweep
    assert how_many(3, [cpu] * 8, 2) == 2  # never more than the groups
    assert how_many(1, [cpu] * 8, 8) == 1


def _sweep_in_background(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", *SWEEP, "trainer.epochs=400", "hydra.launcher.workers=2", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _children(pid: int, want: int = 2, timeout: float = 120) -> list[int]:
    """The processes `pid` started (its groups'), once `want` of them have trained a few epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(stat.parent.name))
        if len(kids) >= want:
            time.sleep(2.0)  # (a few epochs in: checkpoints written)
            return sorted(kids)
        time.sleep(0.1)
    raise AssertionError(f"no {want} group processes under {pid}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the group processes in /proc")
def test_a_group_whose_process_dies_loses_only_its_members_and_resume_finishes_it(tmp_path):
    sweep = tmp_path / "sw"
    proc = _sweep_in_background(tmp_path, f"hydra.sweep.dir={sweep}")
    killed = _children(proc.pid)[0]
    os.kill(killed, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert "killed by SIGKILL" in out + err and "resume=auto" in err
    ended = _ended(sweep)
    assert len(ended) == 2 and all(s["status"] == "ok" for s in ended.values())  # the other group's
    again = nnlab("train", *SWEEP, "trainer.epochs=400", "resume=auto", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_ended(sweep)) == 4 and all(s["status"] == "ok" for s in _ended(sweep).values())


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the group processes in /proc")
def test_sigterm_to_the_launcher_saves_every_group_and_resume_finishes_the_sweep(tmp_path):
    sweep = tmp_path / "sw"
    proc = _sweep_in_background(tmp_path, f"hydra.sweep.dir={sweep}")
    _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-3000:]
    ended = _ended(sweep)
    assert len(ended) == 4 and {s["status"] for s in ended.values()} == {"interrupted"}
    assert {s["signal"] for s in ended.values()} == {"SIGTERM"}
    again = nnlab("train", *SWEEP, "trainer.epochs=400", "resume=auto", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {s["status"] for s in _ended(sweep).values()} == {"ok"}
