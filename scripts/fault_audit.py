"""The fault and security audit of issue 14, rerunnable: how many kills resume exactly, how many bad
inputs get one paragraph and leave nothing behind, how many crafted files are refused without running.

    python scripts/fault_audit.py                 # 20 kills (about 3 minutes on a 2-core CPU)
    python scripts/fault_audit.py --kills 54      # the audit's count

1. Kills: one toy run (a checkpoint every step, dropout and input noise: random streams in play) is
   killed with SIGKILL at seeded random moments, resumed after each kill (a torn metrics line appended
   before every other resume, as a full disk leaves one), and at the end compared with an uninterrupted
   run: the weights and every logged row must be identical.
2. Bad inputs: each command line of BAD must exit 2 (1 for an I/O fault) with one line on stderr, no
   traceback, and no new file or folder in the working directory.
3. Security probes: crafted files whose loading would run a payload (it writes a marker file); each must
   be refused (non-zero exit, one paragraph) and the marker must not appear.
Prints one line per part: held / tried, and the cases that did not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = ["data.source.n_train=160", "data.source.n_test=80", "trainer.epochs=2", "trainer.progress=false"]
KILL_RUN = ["data.source.n_train=1500", "trainer.epochs=4", "trainer.progress=false", "trainer.checkpoint_every=1",
            "trainer.log_every=5", "model.dropout=0.2", "regularization.input_noise=0.1"]  # fmt: skip

BAD = [
    ["activation=rellu"], ["optimizer=adamm"], ["trainer.epoch=3"], ["optimizer.lrr=0.1"], ["optimizer.lr=abc"],
    ["optimizer.lr=-1"], ["optimizer.lr=inf"], ["optimizer.lr=1e400"], ["optimizer.lr=nan"], ["+trainer.foo=1"],
    ["+colour=red"], ["trainer.batch_size=0"], ["trainer.epochs=-3"], ["data.val_fraction=1.5"], ["model.dropout=1.0"],
    ["model.hidden=[64,-1]"], ["model.dropout_kind=gaussian"], ["trainer.precision=fp8"], ["loss=bce", "data=spirals"],
    ["model=cnn"], ["activation=true"], ["model=3"], ["transfer.mode=freeze"], ["transfer.init_from=/nowhere"],
    ["sweep.on_failure=maybe"], ["resume=/nowhere"], ["resume=."], ["hydra.run.dir=/proc/nnlab/run"],
    ["hydra.run.dir=" + "a" * 300], ["-m", "optimizer.lr=0.1,-1"], ["-m", "activation=relu,rellu"],
    ["data=mnist", "data.source.root=./no_data", "data.source.download=false"],
    ["data=mnist", "data.source.root=./offline_root"], ["data=cifar10", "data.source.root=./no_cifar"],
    ["regularization.clip_grad_norm=inf"], ["early_stopping.metric=r2/val"], ["trainer.device=cuda:99"],
]  # fmt: skip


def nnlab(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "nnlab", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def rows(run: Path) -> list[dict]:
    """The rows as readers see them (nnlab report, a resume): a torn last line is not a row."""
    from nnlab.run_folder import read_rows

    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in read_rows(run / "metrics.jsonl")]


def weights(run: Path) -> dict:
    import torch

    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def kills(n: int, seed: int, root: Path) -> tuple[int, int, list[str]]:
    """(exact, tried, what differed): n kills spread over runs of up to 4 kills each."""
    import torch

    ref = root / "ref"
    assert nnlab(["train", *KILL_RUN, f"hydra.run.dir={ref}"], root).returncode == 0
    rng, exact, tried, failures, index = random.Random(seed), 0, 0, [], 0
    while tried < n:
        run = root / f"killed{index}"
        index, before = index + 1, tried
        for attempt in range(min(4, n - tried)):
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            args = [*KILL_RUN, f"hydra.run.dir={run}", *(["resume=auto"] if attempt else [])]
            proc = subprocess.Popen([sys.executable, "-m", "nnlab", "train", *args], cwd=root, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            deadline = time.time() + 120
            while not (run / "metrics.jsonl").exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 2.0))
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
                tried += 1
            proc.wait()
            if killed and rng.random() < 0.5:
                with open(run / "metrics.jsonl", "a") as f:
                    f.write('{"step": 99999, "loss/tr')  # torn, as by a full disk
        kills_here = tried - before
        out = nnlab(["train", *KILL_RUN, f"hydra.run.dir={run}", "resume=auto"], root)
        same_weights = out.returncode == 0 and all(torch.equal(a, b) for a, b in zip(weights(run).values(), weights(ref).values()))
        same_rows = out.returncode == 0 and rows(run) == rows(ref)
        leftovers = list(run.rglob("*.tmp*"))
        if same_weights and same_rows and not leftovers:
            exact += kills_here
        else:
            failures.append(f"{run.name}: weights {'ok' if same_weights else 'differ'}, rows {'ok' if same_rows else 'differ'}, "
                            f"leftovers {len(leftovers)}, exit {out.returncode}")  # fmt: skip
    return exact, tried, failures


def bad_inputs(root: Path) -> tuple[int, int, list[str]]:
    held, failures = 0, []
    for i, args in enumerate(BAD):
        cwd = root / f"bad{i}"
        cwd.mkdir()
        out = nnlab(["train", *TINY, *args], cwd)
        err = out.stderr.strip()
        left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
        ok = out.returncode in (1, 2) and len(err.splitlines()) == 1 and "Traceback" not in err and not left
        held += ok
        if not ok:
            failures.append(f"{' '.join(args)[:60]}: exit {out.returncode}, {len(err.splitlines())} lines, left {left[:3]}")
    return held, len(BAD), failures


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def probes(root: Path) -> tuple[int, int, list[str]]:
    """Crafted files, each with a payload that would write its marker."""
    import torch
    from omegaconf import OmegaConf

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import write_tiny_cifar10

    base = root / "probe_base"
    assert nnlab(["train", *TINY, f"hydra.run.dir={base}"], root).returncode == 0
    assert nnlab(["train", *TINY, "trainer.seed=1", f"hydra.run.dir={root / 'probe_base2'}"], root).returncode == 0
    held, failures, cases = 0, [], []

    def case(name, make, args):
        cases.append((name, make, args))

    def cifar_batch(marker, folder):
        data = write_tiny_cifar10(folder / "data")
        with open(data / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
            pickle.dump({"data": _Payload(marker), "labels": [0]}, f, protocol=2)
        return ["train", "data=cifar10", f"data.source.root={data}", "data.source.download=false", *TINY[2:]]

    def cifar_test_batch(marker, folder):
        data = write_tiny_cifar10(folder / "data")
        with open(data / "cifar-10-batches-py" / "test_batch", "wb") as f:
            pickle.dump(_Payload(marker), f, protocol=2)
        return ["train", "data=cifar10", f"data.source.root={data}", "data.source.download=false", *TINY[2:]]

    def member_config(target):
        def make(marker, folder):
            payload = folder / "payload.pt"
            torch.save(_Payload(marker), payload)
            for name in ("probe_base", "probe_base2"):
                subprocess.run(["cp", "-r", str(root / name), str(folder / name)], check=True)
            cfg = OmegaConf.load(folder / "probe_base" / "config.yaml")
            node = {"_target_": target, "f": str(payload), "weights_only": False}
            if target == "builtins.eval":
                node = {"_target_": target, "_args_": [f"__import__('os').system('touch {marker}')"]}
            cfg.data.source = node
            (folder / "probe_base" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
            return ["ensemble", str(folder)]
        return make

    def pickled_checkpoint(where):
        def make(marker, folder):
            run = folder / "run"
            subprocess.run(["cp", "-r", str(base), str(run)], check=True)
            for name in ("last.pt", "best.pt"):
                torch.save({"format": "nnlab-checkpoint", "model": _Payload(marker)}, run / "checkpoints" / name)
            if where == "resume":
                return ["train", *TINY, "trainer.epochs=3", f"resume={run}"]
            if where == "transfer":
                return ["train", *TINY, f"transfer.init_from={run}", f"hydra.run.dir={folder / 'new'}"]
            subprocess.run(["cp", "-r", str(root / "probe_base2"), str(folder / "b")], check=True)
            return ["ensemble", str(folder)]
        return make

    def resume_config(marker, folder):
        run = folder / "run"
        subprocess.run(["cp", "-r", str(base), str(run)], check=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- data.source._target_=builtins.eval\n- +data.source._args_=[\"__import__('os').system('touch {marker}')\"]\n")
        return ["train", "trainer.epochs=3", f"resume={run}"]

    case("CIFAR-10 data_batch_1 with a pickle payload", cifar_batch, None)
    case("CIFAR-10 test_batch that is a payload", cifar_test_batch, None)
    case("ensemble member config: data.source torch.load(weights_only=false)", member_config("torch.load"), None)
    case("ensemble member config: data.source builtins.eval", member_config("builtins.eval"), None)
    case("resume of a checkpoint holding a pickled object", pickled_checkpoint("resume"), None)
    case("transfer.init_from a checkpoint holding a pickled object", pickled_checkpoint("transfer"), None)
    case("ensemble of a checkpoint holding a pickled object", pickled_checkpoint("ensemble"), None)
    case("resume whose saved overrides name builtins.eval", resume_config, None)
    for i, (name, make, _) in enumerate(cases):
        folder = root / f"probe{i}"
        folder.mkdir()
        marker = folder / "MARKER"
        out = nnlab(make(marker, folder), folder)
        ok = out.returncode != 0 and not marker.exists() and "Traceback" not in out.stderr
        held += ok
        if not ok:
            failures.append(f"{name}: exit {out.returncode}, marker {'written' if marker.exists() else 'absent'}, "
                            f"{out.stderr.strip()[:200]}")  # fmt: skip
    return held, len(cases), failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--only", default="kills,bad,probes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parts = {"kills": ("kills resumed exactly (rows and weights)", lambda: kills(args.kills, args.seed, root)),
                 "bad": ("bad inputs with one paragraph and nothing left behind", lambda: bad_inputs(root)),
                 "probes": ("security probes held", lambda: probes(root))}  # fmt: skip
        for key in args.only.split(","):
            title, run = parts[key]
            start = time.perf_counter()
            held, tried, failures = run()
            print(f"{title}: {held}/{tried}  ({time.perf_counter() - start:.0f} s)", flush=True)
            for f in failures:
                print(f"  did not hold: {f}", flush=True)


if __name__ == "__main__":
    main()
