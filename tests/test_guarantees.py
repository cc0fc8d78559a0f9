"""Issue 32's guarantees, each held in one place and tested as a class, not case by case: the command
line's one rule for what may load code (command_line.refuse_unsafe), the run folder as data
(saved_config.run_overrides, records.read_summary), the one deletion rule (run_folder.replace_runs,
never_output), no write through links, and the faults that only combinations of features showed."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, nnlab, summary, train

MARKER = "PWNED"


def _no_traceback(out) -> None:
    assert "Traceback (most recent call last)" not in out.stderr + out.stdout, out.stderr[-2000:]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run whose folder name holds `=` (as every named run's and sweep member's does)."""
    root = tmp_path_factory.mktemp("finished")
    run, _ = train(
        root, *TINY, "activation=elu", "+activation.alpha=1.0", "optimizer.lr=0.01", run_dir="activation=elu,seed=0"
    )
    return run


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target, symlinks=True)
    return target


# -- 1, 2: one rule for what the command line may load --------------------------------------------------------------


def _unsafe(elsewhere: Path) -> list[str]:
    """Every way the audits found to load a config or code from outside nnlab's tree, or to write elsewhere."""
    (elsewhere / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: builtins.open\n"
        f"      file: {elsewhere / MARKER}\n      mode: w\n"
    )
    rel = os.path.relpath(elsewhere / "evil", Path("/tmp"))  # a relative path that climbs out of the config tree
    return [
        f"experiment=../../../../../../../../..{elsewhere}/evil",
        f"experiment={rel}",
        f"activation=relu,../../{rel}",
        f"--config-dir={elsewhere}",
        "--config-name=evil",
        f"--config-path={elsewhere}",
        f"--experimental-rerun={elsewhere}/x.pickle",
        "+hydra.callbacks.x._target_=builtins.open",
        f"+hydra.callbacks.x.file={elsewhere / MARKER}",
        f"hydra.searchpath=[file://{elsewhere}]",
        f"hydra.output_subdir={elsewhere}",
        f"hydra.job_logging.handlers.file.filename={elsewhere / MARKER}",
        "hydra/launcher=../../x",
        f"hydra.sweeper.settings=[['experiment=../../../../../..{elsewhere}/evil']]",
        "hydra.sweep.subdir=../../x",
        "experiment@_global_=activations",
        "hydra.launcher._target_=builtins.open",
        f"hydra.sweeper.params={{experiment:'choice(activations,../../../..{elsewhere}/evil)'}}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(18))
def test_no_command_line_loads_code_or_configs_from_elsewhere(tmp_path, index):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    arg = _unsafe(elsewhere)[index]
    work = tmp_path / "work"
    work.mkdir()
    out = nnlab("train", "-m", *TINY, arg, f"hydra.sweep.dir={work / 'sweep'}", cwd=work)
    assert out.returncode == 2, out.stderr
    _no_traceback(out)
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr  # one paragraph
    assert (
        not (elsewhere / MARKER).exists()
        and not (work / "sweep").exists()
        and sorted(os.listdir(elsewhere)) == ["evil.yaml"]
    )


def test_every_group_option_is_a_name_and_names_pass(tmp_path):
    """The rule refuses paths, never an option of nnlab's own tree (each group's options through the check)."""
    from nnlab.cli.command_line import check_command_line, group_options, refuse_unsafe
    from nnlab.errors import ConfigError

    for group, options in group_options().items():
        refuse_unsafe([f"{group}={','.join(options)}"])  # a sweep over all of them: names
        for bad in (f"../{options[0]}", f"{options[0]}/../../x", f"/{options[0]}"):
            with pytest.raises(ConfigError, match="never a path"):
                refuse_unsafe([f"{group}={bad}"])
    check_command_line(
        ["hydra.run.dir=x", "hydra.launcher.max_members=4", "hydra.job.chdir=false", "hydra.verbose=true"]
    )


# -- 1: a run folder is data --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_and_doctor_read_the_saved_config_never_the_overrides_file(finished, tmp_path):
    """`.hydra/overrides.yaml` is Hydra's provenance: flags, hydra.* keys and group paths written into it
    run nothing and change nothing; the run continues with the settings of its saved config."""
    run = _copy(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _unsafe(elsewhere)
    (run / ".hydra" / "overrides.yaml").write_text(
        f"- --experimental-rerun={elsewhere}/x.pickle\n- --config-dir={elsewhere}\n- --config-name=evil\n"
        f"- +hydra.callbacks.x._target_=builtins.open\n- +hydra.callbacks.x.file={elsewhere / MARKER}\n"
        f"- experiment=../../../../../../../../..{elsewhere}/evil\n- activation=tanh\n"
    )
    out = nnlab("train", f"resume={run}", "trainer.epochs=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not (elsewhere / MARKER).exists()
    saved = summary(run)
    assert saved["epochs_run"] == 3 and saved["hparams"]["activation"] == "elu"  # the saved config's, not the file's
    assert "activation=tanh" not in (run / ".hydra" / "overrides.yaml").read_text()
    out = nnlab("doctor", str(run.absolute()), cwd=tmp_path)  # absolute, `=` in its name
    _no_traceback(out)
    assert out.returncode == 0 and "nothing to treat" in out.stdout and not (elsewhere / MARKER).exists()


@pytest.mark.slow
def test_a_checkpoints_recorded_choices_are_names_of_the_tree(finished, tmp_path):
    run = _copy(finished, tmp_path)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["choices"]["experiment"] = "../../../../x"
    torch.save(state, run / "checkpoints" / "last.pt")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    out = nnlab("train", f"resume={run}", "trainer.epochs=3", cwd=tmp_path)
    assert out.returncode == 2 and "not an option of nnlab's config tree" in out.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_the_rendered_overrides_compose_the_saved_config_exactly(finished):
    from omegaconf import OmegaConf

    from nnlab.cli.command_line import compose
    from nnlab.config.validate import load_run_config
    from nnlab.run_files.saved_config import render, run_overrides

    overrides = run_overrides(finished)
    assert "activation=elu" in overrides and "+activation.alpha=1.0" in overrides and "optimizer.lr=0.01" in overrides
    composed = OmegaConf.to_container(compose(overrides), resolve=True)
    assert composed == OmegaConf.to_container(load_run_config(finished), resolve=True)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for value in (0.1, 1e-300, -2, True, None, "it's", "a,b=c d", "null", "1e3", [1, [2.5, "x"]], {"a": 1}, math.inf):
        assert OverridesParser.create().parse_override(f"k={render(value)}").value() == value  # read back as it was


# -- 3: one deletion rule --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("where", [".", "..", "~", "/"])
def test_the_working_directory_and_above_are_never_an_output_folder(tmp_path, where):
    work = tmp_path / "a" / "work"
    (work / "src").mkdir(parents=True)
    (work / "mythesis.txt").write_text("years of work")
    (tmp_path / "a" / "notes.txt").write_text("mine")
    for mode in (["-m", "trainer.seed=0,1"], []):
        key = "hydra.sweep.dir" if mode else "hydra.run.dir"
        out = nnlab(
            "train", *mode, *TINY, f"{key}={where}", "overwrite=true", cwd=work, env={"HOME": str(tmp_path / "a")}
        )
        assert out.returncode == 2, out.stderr
        _no_traceback(out)
    assert (work / "mythesis.txt").read_text() == "years of work" and (work / "src").is_dir()
    assert (tmp_path / "a" / "notes.txt").read_text() == "mine" and sorted(os.listdir(work)) == ["mythesis.txt", "src"]


@pytest.mark.slow
def test_overwrite_replaces_nnlabs_runs_and_nothing_else(finished, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={sweep}"]
    assert nnlab("train", *args, cwd=tmp_path).returncode == 0
    (sweep / "thesis.txt").write_text("mine")
    (sweep / "figures").mkdir()
    (sweep / "figures" / "plot.pdf").write_text("mine")
    job = next(p for p in sweep.iterdir() if p.name.startswith("trainer.seed=0"))
    (job / "notes.md").write_text("mine")
    out = nnlab("train", *args, "overwrite=true", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        (sweep / "thesis.txt").read_text()
        == (sweep / "figures" / "plot.pdf").read_text()
        == (job / "notes.md").read_text()
        == "mine"
    )
    assert all(summary(sweep / f"trainer.seed={s}")["status"] == "ok" for s in (0, 1))
    # a folder that holds no run: overwrite=true leaves its files alone
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "data.csv").write_text("1,2\n")
    run, _ = train(tmp_path, *TINY, "overwrite=true", run_dir="plain")
    assert (plain / "data.csv").read_text() == "1,2\n" and summary(run)["status"] == "ok"
    # a run never goes into a sweep's folder
    out = nnlab("train", *TINY, f"hydra.run.dir={sweep}", "overwrite=true", cwd=tmp_path)
    assert out.returncode == 2 and "is a sweep's folder" in out.stderr
    assert nnlab("train", *args, "resume=auto", cwd=tmp_path).returncode == 0  # the sweep still continues


# -- 4: nothing written through a link --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_submitit_link_in_a_sweep_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / ".submitit").symlink_to(outside)
    out = nnlab(
        "train",
        "-m",
        *TINY,
        "trainer.seed=0,1",
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.executor=submitit_local",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "symbolic link" in out.stderr and not os.listdir(outside)


@pytest.mark.slow
def test_a_hard_linked_log_is_replaced_not_appended_to(finished, tmp_path):
    run = _copy(finished, tmp_path)
    outside = tmp_path / "outside.log"
    os.link(run / "train.log", outside)
    before = outside.read_bytes()
    assert nnlab("train", f"resume={run}", "trainer.epochs=3", cwd=tmp_path).returncode == 0
    assert outside.read_bytes() == before and (run / "train.log").read_bytes() != before
    assert os.stat(run / "train.log").st_nlink == 1


# -- 5: bad inputs: one paragraph and exit 2, nothing written ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "trainer.seed=0,1", "hydra.launcher.max_members=0"],
        ["-m", "trainer.seed=0,1", "hydra.launcher.max_members=-3"],
        ["-m", "trainer.seed=0,1", "hydra.launcher.workers=0"],
        ["-m", "trainer.seed=0,1", "hydra.launcher.workers=many"],
        ["trainer.threads=100000"],
        ["-m", "hparams_search=coarse", "hydra.sweeper.n_trials=0"],
        ["-m", "hparams_search=coarse", "hydra.sweeper.n_trials=-1"],
        ["-m", "hparams_search=coarse", "hydra.sweeper.n_jobs=0"],
        ["trainer.batch_size=1", "model.batch_norm=true"],
    ],
)
def test_bad_counts_are_one_paragraph_before_any_work(tmp_path, args):
    out = nnlab("train", *TINY, *args, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("nnlab error:"), out.stderr
    _no_traceback(out)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_is_refused_and_changes_nothing(finished, tmp_path):
    for damage in ("shape", "position"):
        run = _copy(finished, tmp_path, damage)
        state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        if damage == "shape":
            key = next(iter(state["model"]))
            state["model"][key] = torch.zeros(3, 3)
        else:
            state["position"] = "garbage"
        torch.save(state, run / "checkpoints" / "last.pt")
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        out = nnlab("train", f"resume={run}", "trainer.epochs=3", cwd=tmp_path)
        assert out.returncode == 2 and "cannot be resumed" in out.stderr, out.stderr
        _no_traceback(out)
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_readers_take_any_summary(finished, tmp_path):
    """report, doctor and load_run over summaries of every wrong shape: read_summary is their one reader."""
    import nnlab as lib

    shapes = [
        "[1,2]",
        '"text"',
        "null",
        "{" * 5000 + "}" * 5000,
        '{"alarms": "notalist", "status": 3, "metrics": [1]}',
        '{"status": "failed", "alarms": [{"name": "\\u001b[31m[bold]x"}], "metrics": {"acc/test": "high"}}',
        '{"status": "failed", "loss_curve": {"shape": [1]}, "metrics": {}}',
    ]
    for i, text in enumerate(shapes):
        run = _copy(finished, tmp_path, f"r{i}")
        (run / "summary.json").write_text(text)
        (run / "metrics.jsonl").write_text("[" * 200000 + "]" * 200000 + "\n")
    out = nnlab("report", str(tmp_path), cwd=tmp_path)
    _no_traceback(out)
    assert out.returncode in (0, 2)
    for i in range(len(shapes)):
        out = nnlab("doctor", str(tmp_path / f"r{i}"), cwd=tmp_path)
        _no_traceback(out)
        assert out.returncode == 1 and "\x1b" not in out.stdout + out.stderr, out.stderr
        lib.load_run(tmp_path / f"r{i}")  # loads: the summary is only its record


@pytest.mark.slow
def test_mnist_files_that_disagree_with_themselves_are_refused(mnist_root, tmp_path):
    import struct

    from nnlab.data.images import MNIST_FILES

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        os.symlink(mnist_root / "MNIST" / "raw" / name, raw / name)
    (raw / MNIST_FILES[3]).unlink()  # the test labels: 50 of them, one of them 255
    (raw / MNIST_FILES[3]).write_bytes(struct.pack(">II", 2049, 50) + bytes([255] + [1] * 49))
    out = nnlab(
        "train", "data=mnist", f"data.source.root={tmp_path}", "trainer.epochs=1", "data.subset=100", cwd=tmp_path
    )
    assert out.returncode == 2 and "10000 images but 50 labels" in out.stderr, out.stderr
    _no_traceback(out)


# -- 6: what no test combined ------------------------------------------------------------------------------------------


def test_online_learning_batch_size_one(tmp_path):
    run, out = train(tmp_path, *TINY, "trainer.batch_size=1", "data.source.n_train=40")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert (
        summary(run)["status"] == "ok" and summary(run)["steps"] == 2 * 32
    )  # every one of 32 training points, each epoch
    assert any("loss/train" in r for r in rows)


def test_full_batch_gradient_descent(tmp_path):
    """trainer.batch_size=full: one step per epoch on the whole training split (batch norm allowed)."""
    run, out = train(tmp_path, *TINY, "trainer.batch_size=full", "data.source.n_train=40", "model.batch_norm=true")
    s = summary(run)
    assert s["status"] == "ok" and s["steps"] == 2, s  # 2 epochs, one step each
    assert "trainer.batch_size=full: one step per epoch on all 32 training examples" in (run / "train.log").read_text()
    assert s["hparams"]["trainer.batch_size"] == "full"


@pytest.mark.slow
def test_load_run_predicts_regression_values_and_takes_numpy_and_raw_image_shapes(tmp_path, mnist_root):
    import nnlab as lib

    run, _ = train(tmp_path, *TINY, "data=sine", "loss=mse", run_dir="sine")
    model = lib.load_run(run)
    x = np.linspace(-2, 2, 7, dtype=np.float32)
    values = model.predict(x)
    assert values.shape == (7,) and values.dtype == torch.float32 and values.std() > 0
    assert torch.allclose(values, model.model(torch.from_numpy(x)[:, None]).squeeze(-1))
    run, _ = train(
        tmp_path,
        "data=mnist",
        f"data.source.root={mnist_root}",
        "data.subset=200",
        "trainer.epochs=1",
        "trainer.progress=false",
        "model.hidden=[16]",
        run_dir="mnist",
    )
    model = lib.load_run(run)
    from nnlab.data.images import mnist

    images = mnist(str(mnist_root))[2][:5]  # (5, 1, 28, 28) uint8
    expected = model.predict(images)
    assert torch.equal(model.predict(images[:, 0]), expected)  # (N, 28, 28)
    assert torch.equal(model.predict(images[:, 0].numpy()), expected)  # numpy
    assert torch.equal(model.predict(images[0, 0]), expected[:1])  # one (28, 28) image


@pytest.mark.slow
def test_resume_auto_continues_with_the_runs_own_settings(tmp_path):
    run = tmp_path / "long"
    out = nnlab(
        "train", *TINY, "trainer.epochs=4", "optimizer=sgd", "optimizer.lr=0.05", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert out.returncode == 0
    state = summary(run)
    state["status"], state["epochs_run"] = "interrupted", 2  # as a kill at epoch 2 would leave it, less the checkpoint
    (run / "summary.json").write_text(json.dumps(state))
    out = nnlab("train", f"hydra.run.dir={run}", "resume=auto", "trainer.progress=false", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "trainer.epochs=4" in (run / ".hydra" / "overrides.yaml").read_text()
    assert "optimizer=sgd" in (run / ".hydra" / "overrides.yaml").read_text()


def test_ranges_belong_to_the_group_that_owns_the_setting(tmp_path):
    from nnlab.cli.command_line import check_command_line
    from nnlab.errors import ConfigError

    check_command_line(["activation=elu", "+activation.alpha=1.0"])  # ELU's own default
    with pytest.raises(ConfigError, match="alpha"):
        check_command_line(["optimizer=rmsprop", "optimizer.alpha=1.0"])  # RMSprop's decay


@pytest.mark.parametrize("command", ["check", "lr-find", "batch-size-find"])
def test_each_command_has_its_own_help(tmp_path, command):
    out = nnlab(command, "--help", cwd=tmp_path)
    assert (
        out.returncode == 0 and out.stdout.startswith(f"usage: nnlab {command}") and "nnlab train --help" in out.stdout
    )
    assert not (tmp_path / "outputs").exists()


def test_a_closed_pipe_is_quiet(tmp_path):
    import subprocess
    import sys

    for _ in range(3):
        proc = subprocess.run(
            f"{sys.executable} -m nnlab train --help | head -1",
            shell=True,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert proc.stdout.startswith("nnlab train") and proc.stderr == "", proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_the_update_ratio_alarm_leaves_a_schedules_small_rates_alone():
    from nnlab.training.alarms import update_ratio

    stats = {"stats/update_ratio/layer1": 1e-7, "stats/update_ratio/layer2": 1e-7}
    assert update_ratio(stats, 1e-5, 0.1, 100, lr_scale=1.0) is not None  # the rate itself is too low
    assert update_ratio(stats, 1e-5, 0.1, 100, lr_scale=0.01) is None  # a decay's end, a warm-up's start
    assert (
        update_ratio({"stats/update_ratio/l": 1.0}, 1e-5, 0.1, 100, lr_scale=0.01) is not None
    )  # too high is always said


@pytest.mark.slow
def test_doctor_refuses_a_run_that_did_not_train(finished, tmp_path):
    run = _copy(finished, tmp_path, "a=b")
    state = summary(run)
    state["status"] = "failed"
    (run / "summary.json").write_text(json.dumps(state))
    out = nnlab("doctor", str(run), cwd=tmp_path)
    assert out.returncode == 1 and "status failed" in out.stderr
    _no_traceback(out)


@pytest.mark.slow
def test_batch_size_find_suggests_a_rate_that_trains(tmp_path):
    out = nnlab(
        "batch-size-find",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "batch_size_find.max_batch=800",
        "hydra.run.dir=bsf",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads((tmp_path / "bsf" / "batch_size_find.json").read_text())
    assert found["largest"] == 800 and found["rule"] == "linear" and found["tried"][-1]["trains"]
    lr = found["suggested_lr"]
    out = nnlab(
        "train",
        "-m",
        "trainer.batch_size=800",
        "optimizer=sgd",
        f"optimizer.lr={lr}",
        "schedule=warmup_cosine",
        "trainer.seed=0,1,2",
        "hydra.sweep.dir=s",
        "trainer.progress=false",
        cwd=tmp_path,
    )
    assert out.returncode == 0
    assert all(summary(p)["status"] == "ok" for p in (tmp_path / "s").glob("trainer.seed=*"))


@pytest.mark.slow
def test_a_full_disk_is_one_paragraph_and_leaves_no_lock(tmp_path):
    """A file-size limit (as a full disk) fails TensorBoard's writer thread and the run's next write: one
    line each, no traceback, exit 1, the folder resumable and not locked."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, 100 * 1024))

    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "nnlab", "train", *TINY, "trainer.epochs=30", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    _no_traceback(proc)
    assert "cannot write" in proc.stderr and not (run / ".lock").exists()
    assert nnlab("train", f"resume={run}", cwd=tmp_path).returncode == 0 and summary(run)["status"] == "ok"


@pytest.mark.slow
def test_ctrl_c_mid_epoch_says_only_the_epochs_that_ended(tmp_path):
    """SIGINT in the middle of an epoch: no line for the cut epoch, and the closing table and summary count
    the epochs metrics.jsonl holds."""
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nnlab",
            "train",
            "data.source.n_train=20000",
            "trainer.epochs=50",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch   2"):
            break
    time.sleep(0.4)  # into epoch 3 (an epoch takes ~1 s here)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    lines += rest.splitlines()
    assert proc.returncode == 130, err
    printed = [
        int(line.split()[1])
        for line in lines
        if line.startswith("epoch ") and len(line.split()) > 2 and line.split()[1].isdigit()
    ]
    ended = [
        r["epoch"] for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()) if "loss/val" in r
    ]
    assert printed == ended == list(range(1, len(ended) + 1)), (printed, ended)
    assert summary(run)["epochs_run"] == len(ended) and summary(run)["status"] == "interrupted"
