"""The matrix, generated from conf/: every option of every config group, alone, on each kind of data it
applies to (2-D points, regression, images), through `nnlab train` (one sweep per kind of data whose
`hydra.sweeper.settings` are every option that applies: one short epoch each), `nnlab check` and `nnlab
lr-find` (on points), and `nnlab.load_run(...).predict`. What cannot combine with a kind of data is
refused before any work in one paragraph (a ConfigError whose message is one line), which the in-process
half checks option by option. A new option in conf/ is in the matrix without a line of test code."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import nnlab, summary, write_tiny_cifar10
from nnlab.cli.command_line import check_command_line, group_options
from nnlab.data.toy import REGRESSION
from nnlab.errors import ConfigError

CIFAR = write_tiny_cifar10(Path(tempfile.mkdtemp(prefix="nnlab-matrix-")))  # 100 training, 20 test images
SMALL = ["trainer.epochs=1", "trainer.progress=false", "diagnostics.histograms_every=0", "sweep.run_figures=none"]
KINDS = {
    "points": ["data=moons", "data.source.n_train=80", "data.source.n_test=40", *SMALL],
    "regression": ["data=sine", "loss=mse", "data.source.n_train=80", "data.source.n_test=40", *SMALL],
    # images: CIFAR-10 in its official format, 100 training and 20 test images written by the tests (MNIST's
    # 10,000 test images through ResNet-18 on a CPU would take minutes; test_images.py trains on real MNIST)
    "images": [
        "data=cifar10",
        f"data.source.root={CIFAR}",
        "data.source.download=false",
        "data.val_fraction=0.2",
        *SMALL,
    ],
}
GROUPS = [
    g for g in group_options() if g not in ("experiment", "hparams_search")
]  # those two are sweeps (test_experiments)


def _replaced(base: list[str], setting: str) -> list[str]:
    """The base overrides with `setting` (GROUP=OPTION) in place of the base's own choice of that group."""
    key = setting.split("=", 1)[0]
    return [*(a for a in base if a.split("=", 1)[0] != key), setting]


def applies(kind: str) -> tuple[list[str], dict[str, str]]:
    """The options (`GROUP=OPTION`) that combine with this kind of data, and why each other one does not
    (its one-paragraph refusal). The data group: the options of its kind (MNIST: test_images.py and
    test_guarantees.py, on the real files)."""
    fits, refused = [], {}
    for group in GROUPS:
        for option in group_options()[group]:
            if group == "data":
                kind_of = (
                    "images" if option in ("mnist", "cifar10") else "regression" if option in REGRESSION else "points"
                )
                if kind_of != kind or option == "mnist":
                    continue
            setting = f"{group}={option}"
            if setting in KINDS[kind]:  # the kind's own choice (data=moons): every job of the sweep has it
                continue
            try:
                check_command_line(_replaced(KINDS[kind], setting))
                fits.append(setting)
            except ConfigError as e:
                refused[setting] = str(e)
    return fits, refused


def _sweep(command: str, kind: str, settings: list[str], extra: list[str], folder: Path):
    """`nnlab COMMAND -m` over the settings (each a job: the kind's base with that one option), one process."""
    base = KINDS[kind]
    listed = ",".join(f"['{s}']" for s in settings)
    return nnlab(
        command,
        "-m",
        *base,
        *extra,
        f"hydra.sweeper.settings=[{listed}]",
        f"hydra.sweep.dir={folder}",
        cwd=folder.parent,
        timeout=900,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_option_trains_and_predicts(tmp_path, kind):
    """What does not combine with this kind of data is refused in one paragraph (in process); then one
    `nnlab train -m` whose settings are every option that applies: every run ends (ok, or a diagnosed
    divergence), and its load_run(...).predict answers in the data's terms."""
    import nnlab as lib

    fits, refused = applies(kind)
    for setting, message in refused.items():
        assert "\n" not in message and len(message) < 800, (setting, message)
        group, option = setting.split("=")
        assert option in message or group in message or "data" in message or "loss" in message, (setting, message)
    assert fits
    out = _sweep("train", kind, fits, [], tmp_path / "sweep")
    assert "Traceback (most recent call last)" not in out.stderr, out.stderr[-3000:]
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p.parent for p in (tmp_path / "sweep").rglob("summary.json") if p.parent.parent.name != "mean")
    assert len(runs) == len(fits)
    for run in runs:
        s = summary(run)
        assert s["status"] in ("ok", "diverged"), (run, s["status"])
        if s["status"] != "ok":
            continue
        model = lib.load_run(run)
        features = model.model[0].mean.shape[-1]  # the inputs' width (points and regression sets)
        x = {
            "points": np.zeros((3, features), np.float32),
            "images": np.zeros((3, 32, 32, 3), np.uint8),  # channels last
            "regression": np.linspace(-1, 1, 3, dtype=np.float32)
            if features == 1
            else np.zeros((3, features), np.float32),
        }[model.kind]
        predicted = model.predict(x)
        assert predicted.shape[0] == 3 and torch.isfinite(predicted.float()).all()
        if model.kind != "regression":
            assert predicted.dtype == torch.long and (predicted >= 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("command, written", [("check", "check.json"), ("lr-find", "lr_find.json")])
def test_every_option_checks_and_finds_a_rate(tmp_path, command, written):
    """`nnlab check -m` and `nnlab lr-find -m` over every option that applies to points: each folder holds
    its answer (a failed babysitting check is exit 1 and said, never a crash)."""
    fits, _ = applies("points")
    out = _sweep(command, "points", fits, ["check.overfit_steps=20", "lr_find.steps=20"], tmp_path / command)
    assert "Traceback (most recent call last)" not in out.stderr, out.stderr[-3000:]
    assert out.returncode in ((0, 1) if command == "check" else (0,)), out.stderr[-3000:]
    found = sorted((tmp_path / command).rglob(written))
    assert len(found) == len(fits), (command, len(found), len(fits))
    assert all(isinstance(json.loads(p.read_text()), dict) for p in found)
