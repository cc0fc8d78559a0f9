"""What a user meets in the first ten minutes: progress at any width, the start banner, train.log, tab
completion as bash calls it, --version, did-you-mean, the missing-extra error, float folder names, and
`nnlab.load_run` in Python."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from conftest import TINY, nnlab, summary, train
from nnlab.views.console import TrainingProgress, epoch_line, stack_info

EPOCH = {"loss/train": 0.4038, "acc/train": 0.8037, "loss/val": 0.4100, "acc/val": 0.8000}


def _render(width: int) -> tuple[list[str], str]:
    """The progress line(s) at `width` columns after 50 steps and one epoch, and what was printed above."""
    out = Console(width=width, file=io.StringIO(), force_terminal=True, color_system=None)
    progress = TrainingProgress(30, 38, out=out)
    for i in range(50):
        progress.batch(0.4123 if i % 10 == 0 else None)
    progress.epoch(1, EPOCH)
    lines = out.render_lines(progress.bars.get_renderable(), out.options, pad=False)
    return ["".join(s.text for s in line).rstrip() for line in lines], out.file.getvalue()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_progress_fits_the_terminal_with_bar_count_speed_and_time_left(width):
    lines, printed = _render(width)
    assert len(lines) == 1 and len(lines[0]) <= width, lines  # one line, never wrapped
    line = lines[0]
    assert line.startswith("epoch  2/30 ") and "━" in line  # the epoch now running and the bar
    assert "50/1140" in line  # steps done of the whole run
    assert "/s" in line and "0:00:" in line  # speed and the time left
    assert ("loss 0.4123" in line) == (width >= 100)  # the live loss only where there is room
    epoch = printed.strip().splitlines()[-1]
    assert len(epoch) <= max(width, 60) and epoch.startswith("epoch   1")
    if width < 90:
        assert epoch == "epoch   1  loss 0.4038 (val 0.4100)  acc 0.8037 (val 0.8000)"
    else:
        assert epoch == "epoch   1  " + "  ".join(f"{k} {v:.4f}" for k, v in EPOCH.items())


@pytest.mark.parametrize("width", [60, 100])
def test_a_stacks_progress_line_names_the_stack_and_its_members_where_there_is_room(width):
    out = Console(width=width, file=io.StringIO(), force_terminal=True, color_system=None)
    progress = TrainingProgress(30, 38, out=out, stack="stack 2/5")
    for _ in range(50):
        progress.batch(None)
    progress.epoch(1, {}, stack_info(14, 2, "acc/val", [0.91, 0.97, 0.93]))
    lines = out.render_lines(progress.bars.get_renderable(), out.options, pad=False)
    line = "".join(s.text for s in lines[0]).rstrip()
    assert len(lines) == 1 and len(line) <= width and line.startswith("stack 2/5 epoch  2/30")
    assert ("14 running, 2 stopped  acc/val best 0.9700 worst 0.9100" in line) == (width >= 100), line
    assert out.file.getvalue().count("epoch   1") == 0  # no epoch line of one member: the stack's line says it
    assert stack_info(3, 0, "loss/val", [0.2, 0.1, float("nan")]) == "3 running  loss/val best 0.1000 worst 0.2000"


def test_a_stacks_alarms_are_said_once_grouped_by_setting(tmp_path):
    sweep = tmp_path / "s"
    out = nnlab(
        "train",
        "-m",
        *TINY,
        "trainer.epochs=3",
        "init=zeros,he_normal",
        "trainer.seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0 and "4 runs as one stack" in out.stdout, out.stderr[-2000:]
    assert "warning: [" not in out.stdout  # not one line per run and alarm
    line = next(x for x in out.stdout.splitlines() if x.startswith("  init=zeros  2 seeds: "))
    assert "alarms: " in line and "underfitting x2" in line, out.stdout  # one line per setting, its alarms counted
    assert "warning: [underfitting]" in (sweep / "init=zeros,trainer.seed=1" / "train.log").read_text()


def test_epoch_line_for_regression_names_its_metrics():
    line = epoch_line(2, {"loss/train": 0.5, "mse/train": 0.5, "r2/train": 0.9, "loss/val": 0.6, "r2/val": 0.8}, 80)
    assert line == "epoch   2  loss 0.5000 (val 0.6000)  mse 0.5000  r2 0.9000 (val 0.8000)"


def test_banner_train_log_and_model_summary(tmp_path):
    run, proc = train(tmp_path, *TINY)
    out = proc.stdout
    assert f"run starts: {run}" in out and "cpu (1 thread)" in out and "MLP with 4,482 parameters" in out
    assert (
        "data 128 train / 32 val / 80 test (inputs 2)" in out and f"tensorboard --logdir {run.parent}" in out
    )  # the run under its own name
    log = (run / "train.log").read_text()
    assert log.index("run starts") < log.index("epoch   1")  # said before training, not after
    for line in (
        "run starts:",
        "MLP with 4,482 parameters",
        "epoch   1  loss/train",
        "epoch   2  loss/train",
        "nnlab run: ok",
        "acc/test",
    ):
        assert line in log, log
    best = summary(run)["best_epoch"]  # the closing table says where each number comes from
    assert f"best checkpoint (epoch {best})" in log and "epoch 2" in log.split("nnlab run: ok")[1]
    model = summary(run)["model"]
    assert model["class"] == "MLP" and model["parameters"] == model["trainable"] == 4482
    assert [layer["parameters"] for layer in model["layers"] if layer["type"] == "Linear"] == [192, 4160, 130]
    from conftest import events

    texts = events(run).Tags()["tensors"]
    assert "model/text_summary" in texts


def test_a_sweep_says_where_it_goes_first(tmp_path):
    sweep = tmp_path / "s"
    out = nnlab(
        "train", "-m", *TINY, "trainer.seed=0,1", "activation=relu,tanh", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    at_once = ", 2 at a time" if (os.cpu_count() or 1) > 1 else ""  # hydra.launcher.workers=auto: one a core
    assert lines[0] == f"sweep {sweep}: 4 jobs in 2 groups{at_once}; watch it: tensorboard --logdir {sweep}"
    # a sweep's story: each group named by what it shares of what the sweep varies, one line per setting
    assert lines[1] == "[1/2] activation=relu: 2 seeds as one stack" and lines[3].startswith("[2/2] activation=tanh")
    assert lines[2].startswith("  2 seeds: ok x2  loss/test ") and " ± " in lines[2]
    log = (sweep / "activation=tanh,trainer.seed=1" / "train.log").read_text()  # a stacked member's own log
    assert "run starts" in log and "epoch   2  loss/train" in log and "nnlab run: ok" in log


@pytest.mark.parametrize("each_run", ["line", "full"])
def test_a_sweeps_runs_alone_say_one_line_unless_asked_for_everything(tmp_path, each_run):
    sweep = tmp_path / "s"
    out = nnlab(
        "train",
        "-m",
        *TINY,
        "activation=relu,tanh",
        f"sweep.each_run={each_run}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    said = out.stdout.split("──")[0]  # before the closing tables
    if each_run == "line":  # one line a run, named by its folder: no header, no start lines, no table
        runs = [summary(sweep / f"activation={a}")["metrics"] for a in ("relu", "tanh")]
        assert said.splitlines()[1:] == [
            f"  activation={a}: ok  loss/test {m['loss/test']:.4f}  acc/test {m['acc/test']:.4f}"
            for a, m in zip(("relu", "tanh"), runs)
        ], said
    assert ("nnlab run: ok" in said) == ("run starts" in said) == (each_run == "full"), (
        said
    )  # (epoch lines: trainer.progress)
    assert "epoch   2  loss/train" in (sweep / "activation=tanh" / "train.log").read_text()  # kept in its files


@pytest.mark.parametrize("width", [60, 80])
def test_lines_fold_between_words_and_path_segments_never_inside_them(width):
    from nnlab.views.console import fold

    path = "/tmp/outputs/sweeps/2026-12-06_13-27-42/activation=leaky_relu,init=he_normal,trainer.seed=3"
    text = f"  written: {path}/report.csv, {path}/report.md and a few words more to fold after them"
    lines = fold(text, width).splitlines()
    assert all(len(line) <= width for line in lines) and len(lines) > 1
    pieces = [p for line in lines for p in re.split(r"[ /,=]+", line) if p]
    words = [p for p in re.split(r"[ /,=]+", text) if p]
    assert pieces == words  # every name whole: breaks only at spaces, after `/`, `,` or `=`
    assert all(line.startswith("    ") for line in lines[1:])  # continuations indented under the line


def test_alarms_reach_train_log(tmp_path):
    run, _ = train(tmp_path, *TINY, "optimizer.lr=50", "optimizer=sgd", check=False)
    assert summary(run)["status"] == "diverged"
    assert "warning: [divergence]" in (run / "train.log").read_text()


def _complete(line: str, tmp_path: Path) -> list[str]:
    """Ask as bash does: source the installed script, set COMP_* for `line`, call the function."""
    script = nnlab("completion", "bash", cwd=tmp_path).stdout
    (tmp_path / "complete.sh").write_text(script)
    bin_dir = Path(sys.executable).parent
    shim = tmp_path / "bin" / "nnlab"  # `nnlab` on PATH, as pip installs it
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m nnlab "$@"\n')
    shim.chmod(0o755)
    words = line.split(" ")
    probe = (
        f"source {tmp_path / 'complete.sh'}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; "
        "_nnlab_complete; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    env = {**os.environ, "PATH": f"{shim.parent}:{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return [w.strip() for w in out.stdout.splitlines() if w.strip()]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_tab_completion_as_bash_calls_it(tmp_path):
    assert _complete("nnlab tr", tmp_path) == ["train"]
    assert set(_complete("nnlab ", tmp_path)) >= {"train", "report", "ensemble", "check", "lr-find"}
    assert {"activation=tanh", "activation=relu", "activation=elu"} <= set(
        _complete("nnlab train activation=", tmp_path)
    )
    assert _complete("nnlab train activation=ta", tmp_path) == ["activation=tanh"]
    assert _complete("nnlab train trainer.ep", tmp_path) == ["trainer.epochs="]
    assert "optimizer.betas." in _complete("nnlab train optimizer=adam optimizer.", tmp_path)
    assert "init=he_normal" in _complete("nnlab check init=", tmp_path)
    # Hydra's own install line works too, and installs nnlab's script (not a bare `train` command)
    hydra_way = nnlab("train", "-sc", "install=bash", cwd=tmp_path).stdout
    assert "complete -o nospace -o default -F _nnlab_complete nnlab" in hydra_way and " train\n" not in hydra_way


def test_version_everywhere_and_did_you_mean(tmp_path):
    from nnlab import __version__

    for args in (["--version"], ["train", "--version"], ["report", "--version"], ["train", "-m", "--version"]):
        out = nnlab(*args, cwd=tmp_path)
        assert out.returncode == 0 and out.stdout.strip() == f"nnlab {__version__}", (args, out.stdout)
    out = nnlab("tran", cwd=tmp_path)
    assert out.returncode == 2 and "Did you mean `nnlab train`?" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_missing_plugin_names_its_extra(tmp_path):
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401

        pytest.skip("the Ray launcher is installed here")
    except ImportError:
        pass
    out = nnlab("train", "-m", "trainer.seed=0,1", "hydra/launcher=ray", cwd=tmp_path)
    assert out.returncode == 2 and "pip install 'nnlab[ray]'" in out.stderr and "Traceback" not in out.stderr


def test_optuna_trials_get_short_folder_names_and_no_log_noise(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = nnlab(
        "train",
        "-m",
        "hparams_search=coarse",
        *TINY,
        "trainer.epochs=1",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    runs = sorted(p.name for p in (tmp_path / "s").iterdir() if (p / "summary.json").exists())
    assert len(runs) == 3
    for name in runs:  # e.g. ...optimizer.lr=0.005547,optimizer.weight_decay=0.001955,...,job=0
        lr = name.split("optimizer.lr=")[1].split(",")[0]
        assert len(lr.replace("0.", "").replace("-", "").split("e")[0].lstrip("0")) <= 5 and name.endswith(
            tuple(f"job={i}" for i in range(3))
        )
    assert len({n.split(",job=")[0] for n in runs}) == 3
    for noise in ("setup plugin alembic", "A new study created"):
        assert noise not in out.stdout + out.stderr


def test_short_dirname_rounds_floats_and_keeps_names_apart():
    from nnlab.jobs.stacking import short_dirname

    assert (
        short_dirname("optimizer.lr=0.005547119471592123,trainer.seed=3", 7)
        == "optimizer.lr=0.005547,trainer.seed=3,job=7"
    )
    assert (
        short_dirname("optimizer.lr=0.1,trainer.seed=3", 7) == "optimizer.lr=0.1,trainer.seed=3"
    )  # nothing rounded: as Hydra names it
    assert short_dirname("init.gain=1.2345678e-05", 0) == "init.gain=1.235e-05,job=0"
    # two trials whose rates round alike still get folders of their own
    assert short_dirname("optimizer.lr=0.0055471", 1) != short_dirname("optimizer.lr=0.0055472", 2)


def test_load_run_gives_a_model_for_raw_inputs(tmp_path):
    import nnlab

    run, _ = train(tmp_path, *TINY)
    loaded = nnlab.load_run(run)
    assert loaded.checkpoint.name == "best.pt" and loaded.summary["status"] == "ok" and loaded.kind == "points"
    from nnlab.data.toy import moons

    x_train, y_train, x_test, y_test = moons(n_train=160, n_test=80, seed=0)  # the run's raw test points
    acc = (loaded.predict(x_test) == y_test).float().mean().item()
    assert acc == pytest.approx(summary(run)["metrics"]["acc/test"], abs=1e-6)  # exactly what the run measured
    assert loaded.model(x_test).shape == (80, 2) and not loaded.model.training
    shown = repr(loaded)  # one line, not the model and config
    assert (
        shown.startswith(f"Run('{run}', checkpoint='best.pt', kind='points', status='ok', ")
        and "acc/test=" in shown
        and len(shown) < 200
    )
    # as Keras and Lightning users expect it: numpy in, probabilities, the history, in the package's names
    assert "load_run" in dir(nnlab) and "Run" in nnlab.__all__
    probs = loaded.predict_proba(x_test.numpy())
    assert probs.shape == (80, 2) and torch.allclose(probs.sum(1), torch.ones(80))
    assert torch.equal(probs.argmax(1), loaded.predict(x_test.numpy())) and torch.equal(
        loaded.predict(x_test[0].numpy()), loaded.predict(x_test[:1])
    )  # one point, a batch of one
    history = loaded.history
    assert history["epoch"] == [1, 2] and len(history["acc/val"]) == 2
    assert history["loss/train"][-1] == pytest.approx(summary(run)["metrics"]["loss/train"])
    last = nnlab.load_run(run / "checkpoints" / "last.pt")
    assert last.checkpoint.name == "last.pt" and torch.equal(last.model(x_test), last.model(x_test))
    from nnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="not an nnlab run folder"):
        nnlab.load_run(tmp_path)


def test_load_run_on_images_takes_uint8(tmp_path, mnist_root):
    import nnlab
    from nnlab.data.images import mnist

    run, _ = train(
        tmp_path,
        "data=mnist",
        f"data.source.root={mnist_root}",
        "data.subset=512",
        "trainer.epochs=1",
        "trainer.progress=false",
        "model.hidden=[16]",
    )
    loaded = nnlab.load_run(run)
    _, _, x_test, y_test = mnist(str(mnist_root), download=False)
    assert x_test.dtype == torch.uint8
    acc = (loaded.predict(x_test) == y_test).float().mean().item()
    assert acc == pytest.approx(summary(run)["metrics"]["acc/test"], abs=1e-6)
    images = x_test[:5].numpy()  # numpy, (N, 28, 28) and one (28, 28) image, channels-last (N, 28, 28, 1)
    assert torch.equal(loaded.predict(images), loaded.predict(x_test[:5]))
    assert torch.equal(loaded.predict(images[0]), loaded.predict(x_test[:1]))
    assert torch.equal(loaded.predict(images[..., None]), loaded.predict(x_test[:5]))
    assert loaded.predict_proba(images).shape == (5, 10)


def test_an_error_paragraph_wraps_between_words_in_a_terminal_and_is_one_line_in_a_pipe(monkeypatch):
    import nnlab.views.console as terminal

    message = (
        "the checkpoint /tmp/some/where/checkpoints/last.pt was written by another model; choose resume=auto instead"
    )
    for tty, width in ((True, 60), (False, 60)):
        out = Console(file=io.StringIO(), force_terminal=tty, width=width, highlight=False, no_color=True)
        monkeypatch.setattr(terminal, "err_console", out)
        terminal.error(message)
        lines = re.sub(r"\x1b\[[0-9;]*m", "", out.file.getvalue()).rstrip("\n").split("\n")  # (bold: an escape code)
        if tty:
            assert len(lines) > 1 and all(len(line) <= width for line in lines)
            assert " ".join(line.strip() for line in lines) == f"nnlab error: {message}"  # no word cut in two
        else:
            assert lines == [f"nnlab error: {message}"]
