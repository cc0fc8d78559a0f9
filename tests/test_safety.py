"""Nothing runs and nothing is lost (issue 21): nested `_target_`s in run folders, symbolic links in run,
sweep and report folders, two commands racing for one folder, a finished run or sweep never replaced
silently, exit codes a script can trust, readers that survive what a file holds, and a closing that a kill
leaves resumable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from conftest import TINY, nnlab, summary, train


class _Payload:
    """Unpickled, this would call os.system and write the marker."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two finished tiny runs (a and b, seeds 0 and 1), copied by each test that crafts them."""
    root = tmp_path_factory.mktemp("finished")
    train(root, *TINY, run_dir="a")
    train(root, *TINY, "trainer.seed=1", run_dir="b")
    return root


def _copy(finished, tmp_path, *names):
    for name in names:
        shutil.copytree(finished / name, tmp_path / "runs" / name, symlinks=True)
    return tmp_path / "runs"


# nested targets at several depths: under a setting, in a list, and Hydra's positional _args_
NESTED = {
    "optimizer.foreach": lambda payload: {"_target_": "torch.load", "f": str(payload), "weights_only": False},
    "model.hidden": lambda payload: [8, {"_target_": "torch.load", "f": str(payload), "weights_only": False}],
    "data.source": lambda payload: {
        "_target_": "nnlab.data.toy.moons",
        "n_train": {"_target_": "builtins.eval", "_args_": [f"__import__('os').system('touch {payload}.ran')"]},
    },
}


@pytest.mark.parametrize("key", list(NESTED))
def test_a_nested_target_in_a_run_folder_runs_through_no_reader(finished, tmp_path, key):
    from nnlab import load_run
    from nnlab.errors import ConfigError

    runs = _copy(finished, tmp_path, "a", "b")
    marker, payload = tmp_path / "MARKER", tmp_path / "payload.pt"
    torch.save(_Payload(marker), payload)
    cfg = OmegaConf.load(runs / "a" / "config.yaml")
    OmegaConf.update(cfg, key, NESTED[key](payload), merge=False, force_add=True)
    (runs / "a" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    with pytest.raises(ConfigError, match=r"_target_ is not allowed|_args_ is not allowed"):
        load_run(runs / "a")
    for args in (
        ["ensemble", str(runs)],
        ["report", str(runs)],
        ["train", *TINY, f"transfer.init_from={runs / 'a'}", f"hydra.run.dir={tmp_path / 'new'}"],
    ):
        out = nnlab(*args, cwd=tmp_path)
        assert "Traceback" not in out.stderr, out.stderr
        if args[0] == "ensemble":
            assert out.returncode == 2 and "is not allowed" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    saved = {
        "optimizer.foreach": f"+optimizer.foreach={{_target_:torch.load,f:'{payload}',weights_only:false}}",
        "model.hidden": f"model.hidden=[8,{{_target_:torch.load,f:'{payload}',weights_only:false}}]",
        "data.source": f"+data.source._args_=[\"__import__('os').system('touch {payload}.ran')\"]",
    }
    (runs / "b" / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([saved[key]])
    )  # Hydra's record: never read back
    out = nnlab("train", "trainer.epochs=3", f"resume={runs / 'b'}", cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr  # it continues with its saved config
    out = nnlab("train", "trainer.epochs=3", f"resume={runs / 'a'}", cwd=tmp_path)  # the payload in its config.yaml
    assert out.returncode == 2 and "is not allowed" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not marker.exists() and not (tmp_path / "payload.pt.ran").exists()


def test_targets_outside_their_groups_module_are_refused():
    from nnlab.cli.command_line import compose
    from nnlab.config.validate import validate
    from nnlab.errors import ConfigError

    for override, why in (
        ("optimizer._target_=nnlab.training.setup.instantiate", "defined in torch.optim"),
        ("activation._target_=torch.nn.modules.module.register_module_forward_hook", "a class"),
        ("loss._target_=nnlab.cli.main", "defined in nnlab.nn.losses"),
    ):
        with pytest.raises(ConfigError, match=why):
            validate(compose([override]))


def _links(run, outside):
    """Every file a resumed run rewrites or appends, as a link to a file of the user's outside the run."""
    for name in ("train.log", "curves.png", "summary.json"):
        target = outside / name
        target.write_text("the user's own file\n")
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(target)


def test_no_write_follows_a_symbolic_link_in_a_run_folder(finished, tmp_path):
    runs = _copy(finished, tmp_path, "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    _links(runs / "a", outside)
    out = nnlab("train", *TINY, "trainer.epochs=3", f"resume={runs / 'a'}", cwd=tmp_path)
    assert out.returncode == 2 and "is a symbolic link" in out.stderr and "Traceback" not in out.stderr, out.stderr
    hydra_yaml = runs / "a" / ".hydra" / "hydra.yaml"  # Hydra writes .hydra/ before any job: refused before it
    for name in ("train.log", "curves.png", "summary.json"):
        (runs / "a" / name).unlink()
    shutil.copy(hydra_yaml, outside / "hydra.yaml")
    hydra_yaml.unlink()
    hydra_yaml.symlink_to(outside / "hydra.yaml")
    before = (outside / "hydra.yaml").read_text()
    out = nnlab("train", *TINY, "trainer.epochs=3", f"resume={runs / 'a'}", cwd=tmp_path)
    assert out.returncode == 2 and "hydra.yaml is a symbolic link" in out.stderr, out.stderr
    assert (outside / "hydra.yaml").read_text() == before
    assert all(
        (outside / n).read_text() == "the user's own file\n" for n in ("train.log", "curves.png", "summary.json")
    )
    for name in (
        "report.csv",
        "report.md",
        "ensemble.json",
    ):
        # report and ensemble replace a link, never write through it
        (outside / name).write_text("mine\n")
        (runs / name).symlink_to(outside / name)
    hydra_yaml.unlink()
    _copy(finished, tmp_path, "b")
    assert nnlab("report", str(runs), cwd=tmp_path).returncode == 0
    assert nnlab("ensemble", str(runs), cwd=tmp_path).returncode == 0
    for name in ("report.csv", "report.md", "ensemble.json"):
        assert (
            (outside / name).read_text() == "mine\n"
            and not (runs / name).is_symlink()
            and (runs / name).stat().st_size > 5
        )
    (tmp_path / "sweep").mkdir()  # a sweep's job folder that is a link: that job refused, the others run
    (tmp_path / "sweep" / "trainer.seed=1").symlink_to(outside)
    out = nnlab("train", "-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert out.returncode == 1 and "trainer.seed=1 is a symbolic link" in out.stderr, out.stderr
    assert summary(tmp_path / "sweep" / "trainer.seed=0")["status"] == "ok" and not list(outside.glob("trainer*"))


def test_runs_alone_overview_is_not_written_through_a_link(tmp_path):
    """outputs/runs/overview (the runs' HParams column list) as a link: one paragraph, the run itself kept."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "outputs" / "runs").mkdir(parents=True)
    (tmp_path / "outputs" / "runs" / "overview").symlink_to(outside)
    out = nnlab("train", *TINY, cwd=tmp_path)
    assert out.returncode == 2 and "overview is a symbolic link" in out.stderr and "Traceback" not in out.stderr, (
        out.stderr
    )
    (run,) = [p for p in (tmp_path / "outputs" / "runs").iterdir() if p.name != "overview"]
    assert summary(run)["status"] == "ok" and not list(outside.iterdir())


def test_an_ensemble_folder_that_is_a_link_is_refused(finished, tmp_path):
    """runs/ensemble (its TensorBoard run) as a link: one paragraph and exit 2, nothing written where it points."""
    runs = _copy(finished, tmp_path, "a", "b")
    outside = tmp_path / "outside"
    outside.mkdir()
    (runs / "ensemble").symlink_to(outside)
    out = nnlab("ensemble", str(runs), cwd=tmp_path)
    assert out.returncode == 2 and "ensemble is a symbolic link" in out.stderr and "Traceback" not in out.stderr, (
        out.stderr
    )
    assert not list(outside.iterdir())


def test_two_commands_into_one_folder_lose_nothing(tmp_path):
    """The second is refused while the first trains; the first's run is whole."""
    run = tmp_path / "run"
    long = [*TINY, "trainer.epochs=100000"]  # still training when the signal comes
    first = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", *long, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    rows = run / "metrics.jsonl"
    while not (rows.exists() and rows.read_text().strip()) and time.time() < deadline:  # training, not starting:
        time.sleep(0.05)  # a signal while it starts leaves no half-made run (test_faults), not a checkpoint
    second = nnlab("train", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert second.returncode == 2 and "in use by another nnlab process" in second.stderr, second.stderr
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, out + err
    assert summary(run)["status"] == "interrupted" and (run / "checkpoints" / "last.pt").is_file()


def test_commands_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nnlab", "train", *TINY],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    root = tmp_path / "outputs" / "runs"
    runs = sorted(p for p in root.iterdir() if p.name != "overview")
    assert len(runs) == 3 and all(summary(r)["status"] == "ok" for r in runs)
    # their HParams overview, written by each as it ended (under its lock): one event file, no .lock left
    assert len(list((root / "overview").glob("events.out.tfevents.*"))) == 1 and not list(root.rglob(".lock"))


@pytest.mark.slow
def test_a_finished_run_or_sweep_is_never_replaced_silently(finished, tmp_path):
    runs = _copy(finished, tmp_path, "a")
    before = (runs / "a" / "checkpoints" / "last.pt").read_bytes()
    out = nnlab("train", *TINY, f"hydra.run.dir={runs / 'a'}", cwd=tmp_path)
    assert out.returncode == 2 and "holds a finished run" in out.stderr and "overwrite=true" in out.stderr
    assert (runs / "a" / "checkpoints" / "last.pt").read_bytes() == before
    out = nnlab("train", *TINY, "trainer.seed=5", f"hydra.run.dir={runs / 'a'}", "overwrite=true", cwd=tmp_path)
    assert out.returncode == 0 and summary(runs / "a")["seed"] == 5
    assert len(list((runs / "a").glob("events.out.tfevents.*"))) == 1  # the old run's events went with it
    sweep = ["-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    assert nnlab("train", *sweep, cwd=tmp_path).returncode == 0
    again = nnlab("train", *sweep, cwd=tmp_path)
    assert (
        again.returncode == 2 and "holds 2 runs of an earlier sweep" in again.stderr and "resume=auto" in again.stderr
    )
    assert nnlab("train", *sweep, "resume=auto", cwd=tmp_path).returncode == 0  # finished members kept
    nested = nnlab("train", "-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={runs / 'a'}", cwd=tmp_path)
    assert nested.returncode == 2 and "a sweep would nest its runs inside it" in nested.stderr
    for folder in ("", ".", ".."):
        out = nnlab("train", *TINY, f"hydra.run.dir={folder}", cwd=runs)
        assert out.returncode == 2 and "working directory" in out.stderr, out.stderr
    assert sorted(p.name for p in runs.iterdir()) == ["a"]


def _hold(folder):
    """Another process holding `folder`'s lock, as a running nnlab does."""
    folder.mkdir(parents=True, exist_ok=True)
    code = f"import fcntl,os,time; fd=os.open({str(folder / '.lock')!r}, os.O_RDWR|os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_exit_codes_scripts_can_trust(tmp_path):
    sweep = tmp_path / "sweep"
    holder = _hold(sweep / "trainer.seed=1")  # one job's folder is another process's
    try:
        out = nnlab("train", "-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
        assert out.returncode == 1 and "1 job of the sweep failed or was refused" in out.stderr, out.stdout + out.stderr
        assert summary(sweep / "trainer.seed=0")["status"] == "ok"
    finally:
        holder.kill()
    holder = _hold(tmp_path / "busy")  # a second sweep into a running sweep's folder: refused whole
    try:
        out = nnlab("train", "-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={tmp_path / 'busy'}", cwd=tmp_path)
        assert out.returncode == 2 and "in use by another nnlab process" in out.stderr
    finally:
        holder.kill()
    for args in (
        ["-m", "trainer.seed=range(3,1)"],
        ["trainer.seed=18446744073709551617"],
        ["data.source.n_train=1000000000000"],
        ["optimizer=nesterov", "optimizer.momentum=0"],
        ["model.hidden=[1000000,1000000]"],
    ):
        cwd = tmp_path / "bad"
        cwd.mkdir()
        out = nnlab("train", *TINY, *args, cwd=cwd)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, (
            out.stderr
        )
        assert not list(cwd.iterdir())  # refused before any folder exists
        cwd.rmdir()


def test_readers_survive_what_a_file_holds(finished, tmp_path):
    from nnlab.views import figures

    runs = _copy(finished, tmp_path, "a", "b")
    with open(runs / "a" / "metrics.jsonl", "a") as f:
        f.write(
            json.dumps({"step": 3, "loss/train": "nan"})
            + "\n"
            + json.dumps({"step": 4, "loss/train": 0.5, "epoch": "x"})
            + "\n"
        )
    figures.run_curves(runs / "a", "points")
    (runs / "a" / ".hydra" / "overrides.yaml").write_text('- "trainer.seed=[/bold]\\e]0;pwned\\a[link=http://x]"\n')
    out = nnlab("report", str(runs), cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "\x1b]0;" not in out.stdout and "\\x1b]0;pwned\\x07" in out.stdout and "[/bold]" in out.stdout
    (runs / "ensemble").write_text("a file where the ensemble's TensorBoard folder goes")
    out = nnlab("ensemble", str(runs), cwd=tmp_path)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, (
        out.stderr
    )
    (runs / "a" / "checkpoints" / "best.pt").write_bytes(b"PK\x03\x04 not a zip at all" * 50)
    out = nnlab("train", *TINY, f"transfer.init_from={runs / 'a'}", f"hydra.run.dir={tmp_path / 't'}", cwd=tmp_path)
    assert (
        out.returncode == 2
        and len(out.stderr.strip().splitlines()) == 1
        and "not a readable nnlab checkpoint" in out.stderr
    )


def test_a_kill_while_closing_leaves_a_run_that_resumes_to_a_complete_folder(finished, tmp_path):
    """summary.json is written last: a run killed after its last step but before it has no summary and no
    figures yet; resume=auto closes it, figures and all."""
    runs = _copy(finished, tmp_path, "a")
    files = lambda: {p.name for p in (runs / "a").iterdir() if not p.name.startswith("events.")}  # noqa: E731
    complete = files()
    for name in ("summary.json", "curves.png", "decision_boundary.png"):
        (runs / "a" / name).unlink()
    out = nnlab("train", *TINY, f"hydra.run.dir={runs / 'a'}", "resume=auto", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert files() == complete and summary(runs / "a")["status"] == "ok"
    assert summary(runs / "a")["metrics"] == summary(finished / "a")["metrics"]


def test_sigterm_during_start_up_is_one_line_and_leaves_nothing(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", *TINY, "trainer.epochs=100000"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "outputs" / "runs").is_dir() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-2000:]
    runs = (
        [p for p in (tmp_path / "outputs" / "runs").iterdir() if p.name != "overview"]
        if (tmp_path / "outputs").exists()
        else []
    )
    left = [str(f.relative_to(tmp_path)) for f in (tmp_path / "outputs").rglob("*")] if runs else []
    assert len(runs) <= 1 and all((r / "summary.json").is_file() for r in runs), (left, out[-2000:], err[-2000:])
    assert not runs or summary(runs[0])["status"] == "interrupted"  # nothing left, or a run saved and marked


SWALLOWED = """
import signal, sys
import nnlab.training.member as run_files
from nnlab.views.console import note_interrupt
from nnlab.cli import main

def setup(*args, **kwargs):  # a SIGTERM in start-up that a library caught (try: import ... except ...)
    exp = real(*args, **kwargs)
    try:
        note_interrupt(signal.SIGTERM)
    except KeyboardInterrupt:
        pass
    return exp

real, run_files.setup = run_files.setup, setup
sys.exit(main(sys.argv[1:]))
"""


def test_a_start_up_signal_a_library_swallowed_stops_before_the_first_checkpoint(tmp_path):
    """The race CI met: a signal caught by a library in start-up is raised again before the run writes its
    first checkpoint, so the folder the command made goes with it (not a folder with last.pt and no summary)."""
    out = subprocess.run(
        [sys.executable, "-c", SWALLOWED, "train", *TINY], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 128 + signal.SIGTERM and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "interrupted (SIGTERM)" in out.stderr and not (tmp_path / "outputs").exists()
