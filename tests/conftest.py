"""Shared fixtures: run the real `nnlab` CLI in a subprocess, read TensorBoard events back, and data
roots (real MNIST from ../shared/data where present, a tiny CIFAR-10 written in the official format)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))  # the tests use scripts/screenshots.py's TensorBoard server and browser
# real MNIST for the tests: $NNLAB_TEST_DATA (a folder holding MNIST/raw), else ../shared/data beside the repository
SHARED_DATA = Path(os.environ.get("NNLAB_TEST_DATA", REPO.parent / "shared" / "data"))

# Small and fast: 160 toy points, 2 epochs, no progress bars.
TINY = ["data.source.n_train=160", "data.source.n_test=80", "trainer.epochs=2", "trainer.progress=false"]


def nnlab(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `nnlab ARGS` (the console script's code) in a process of its own and capture its output: forked
    from a server that has imported torch and the other heavy libraries once (cli_fork.py: ~2.3 s less a
    command), or, with NNLAB_TEST_SUBPROCESS=1, as a plain `python -m nnlab` subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}
    if os.environ.get("NNLAB_TEST_SUBPROCESS") == "1" or _starts_workers(args):
        return subprocess.run(
            [sys.executable, "-m", "nnlab", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    import cli_fork

    return cli_fork.run(list(args), cwd, full_env, timeout)


def _starts_workers(args) -> bool:
    """A launcher or executor that starts worker processes of its own (joblib's loky, submitit, Ray) expects
    an interpreter started as usual: such commands run as a plain subprocess."""
    return any(
        a.startswith("hydra/launcher=")
        and a != "hydra/launcher=batched"
        or (a.startswith("hydra.launcher.executor=") and a != "hydra.launcher.executor=local")
        for a in args
    )


def train(
    tmp_path: Path, *overrides: str, run_dir: str = "run", check: bool = True
) -> tuple[Path, subprocess.CompletedProcess]:
    """`nnlab train` into tmp_path/run_dir; returns the run directory and the finished process."""
    run = tmp_path / run_dir
    proc = nnlab("train", *overrides, f"hydra.run.dir={run}", cwd=tmp_path)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return run, proc


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def events(run: Path):
    """An EventAccumulator loaded with every scalar, image and tensor of the run's TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0, "histograms": 0})
    acc.Reload()
    return acc


def hparams_experiment(url: str, limit: int) -> dict:
    """What TensorBoard's HPARAMS dashboard asks its server: the experiment (its columns: hparamsLimit)."""
    body = json.dumps({"experimentName": "", "hparamsLimit": limit, "includeMetrics": True}).encode()
    request = urllib.request.Request(
        f"{url}/data/plugin/hparams/experiment", body, {"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=30).read())


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("real MNIST is not in ../shared/data/MNIST/raw")
    return SHARED_DATA


def write_tiny_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """Write ROOT/cifar-10-batches-py in the official format (pickled dicts, uint8 rows of 3072)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {
            "batch_label": f"{name} of 5",
            "labels": labels,
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_cases_per_batch": per_batch,
        "num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return root


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    return write_tiny_cifar10(tmp_path_factory.mktemp("cifar"))
