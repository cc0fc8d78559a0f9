"""The matrix, generated from conf/: every option of every config group, alone, on each kind of data it
applies to (2-D points, regression, images), through `nnlab train` (a sweep over the group's options: one
short epoch each), `nnlab check` and `nnlab lr-find` (on points), and `nnlab.load_run(...).predict`.
What cannot combine with a kind of data is refused before any work in one paragraph (a ConfigError
whose message is one line), which the in-process half checks option by option. A new option in conf/ is
in the matrix without a line of test code."""

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
SMALL = [
    "trainer.epochs=1",
    "trainer.progress=false",
    "model.hidden=[8]",
    "diagnostics.histograms_every=0",
    "sweep.run_figures=none",
]
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


def applies(group: str, kind: str) -> tuple[list[str], dict[str, str]]:
    """The group's options that combine with this kind of data, and why each other one does not (its
    one-paragraph refusal). The data group: the options of this kind."""
    base = [a for a in KINDS[kind] if not (group == "data" and a.startswith(("data.source.n_", "data=")))]
    if group == "loss":
        base = [a for a in base if not a.startswith("loss=")]
    fits, refused = [], {}
    for option in group_options()[group]:
        if group == "data":
            kind_of = "images" if option in ("mnist", "cifar10") else "regression" if option in REGRESSION else "points"
            if kind_of != kind or option == "mnist":  # MNIST: test_images.py and test_guarantees.py, on the real files
                continue
            extra = [f"data.source.root={CIFAR}", "data.source.download=false"] if kind == "images" else []
            args = [*base, f"data={option}", *extra]
        else:
            args = [*base, f"{group}={option}"]
        if group == "model" and option != "mlp":
            args = [a for a in args if not a.startswith("model.hidden")]
        try:
            check_command_line(args)
            fits.append(option)
        except ConfigError as e:
            refused[option] = str(e)
    return fits, refused


CASES = [(g, k) for g in GROUPS for k in KINDS]


@pytest.mark.slow
@pytest.mark.parametrize("group,kind", CASES)
def test_every_option_trains_and_predicts(tmp_path, group, kind):
    """What does not combine with this kind of data is refused in one paragraph (in process); then `nnlab
    train -m GROUP=every,option,that,applies`: every run ends (ok, or a diagnosed divergence), and its
    load_run(...).predict answers in the data's terms."""
    import nnlab as lib

    fits, refused = applies(group, kind)
    for option, message in refused.items():
        assert "\n" not in message and len(message) < 800, (option, message)
        assert option in message or group in message or "data" in message or "loss" in message, (option, message)
    if not fits:
        pytest.skip(f"no option of {group} applies to {kind}")
    base = [
        a
        for a in KINDS[kind]
        if not (group == "data" and a.startswith(("data.source.n_", "data=")))
        and not (group == "loss" and a.startswith("loss="))
        and not (group == "model" and a.startswith(("model.hidden", "model.channels")))
    ]
    if group == "data" and kind == "images":
        base = [a for a in base if not a.startswith("data.source")] + [
            f"data.source.root={CIFAR}",
            "data.source.download=false",
        ]
    out = nnlab("train", "-m", *base, f"{group}={','.join(fits)}", "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=600)
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
@pytest.mark.parametrize("group", GROUPS)
def test_every_option_checks_and_finds_a_rate(tmp_path, group):
    """`nnlab check -m` and `nnlab lr-find -m` over the group's options on points: each folder holds its
    answer (a failed babysitting check is exit 1 and said, never a crash)."""
    fits, _ = applies(group, "points")
    if not fits:
        pytest.skip(f"no option of {group} applies to points")
    base = [
        a
        for a in KINDS["points"]
        if not (group == "data" and a.startswith(("data.source.n_", "data=")))
        and not (group == "model" and a.startswith("model.hidden"))
    ]
    quick = ["check.overfit_steps=20", "lr_find.steps=20"]
    for command, written in (("check", "check.json"), ("lr-find", "lr_find.json")):
        out = nnlab(
            command,
            "-m",
            *base,
            *quick,
            f"{group}={','.join(fits)}",
            f"hydra.sweep.dir={command}",
            cwd=tmp_path,
            timeout=600,
        )
        assert "Traceback (most recent call last)" not in out.stderr, out.stderr[-3000:]
        assert out.returncode in ((0, 1) if command == "check" else (0,)), out.stderr[-3000:]
        found = sorted((tmp_path / command).rglob(written))
        assert len(found) == len(fits), (command, found)
        assert all(isinstance(json.loads(p.read_text()), dict) for p in found)
