"""What do the default diagnostics cost? Trains the same run with the default diagnostics and with
them off (no per-layer statistics, histograms, figures or alarms), a few times each, and reports the
slowdown of the training time.

    python scripts/bench_diagnostics.py                       # MNIST MLP 784-64-128-64-10 if ../shared/data has MNIST, else toy
    python scripts/bench_diagnostics.py --data moons --repeats 5

The target (issue 3): the default cadence slows a run by at most 10%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFF = ["diagnostics.every=0", "diagnostics.histograms_every=0", "alarms.enabled=false"]


def overrides_for(data: str, epochs: int) -> list[str]:
    common = [f"trainer.epochs={epochs}", "trainer.progress=false", "trainer.device=cpu"]
    if data == "mnist":
        root = REPO.parent / "shared" / "data"
        return ["data=mnist", f"data.source.root={root}", "model.hidden=[64,128,64]", "trainer.batch_size=128", *common]
    return [f"data={data}", *common]


def timed_run(overrides: list[str]) -> float:
    from nnlab.cli.command_line import compose
    from nnlab.training.loop import train
    from nnlab.training.member import prepare

    cfg = compose(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        member = prepare(cfg, tmp, quiet=True)
        start = time.perf_counter()
        train([member])  # the loop and the run's closing (test, figures)
        elapsed = time.perf_counter() - start
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    have_mnist = (REPO.parent / "shared" / "data" / "MNIST" / "raw").exists()
    parser.add_argument("--data", default="mnist" if have_mnist else "moons")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base = overrides_for(args.data, args.epochs)
    timed_run(base)  # warm-up: imports, font cache, allocator
    on, off = [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        on.append(timed_run(base))
        off.append(timed_run(base + OFF))
    print(
        f"data={args.data} epochs={args.epochs} repeats={args.repeats} (training time; min is the intrinsic cost, median shows the noise)"
    )
    print(f"  diagnostics off    : min {min(off):.2f} s, median {statistics.median(off):.2f} s")
    print(f"  default diagnostics: min {min(on):.2f} s, median {statistics.median(on):.2f} s")
    print(f"  overhead (min)     : {100 * (min(on) / min(off) - 1):+.1f}%  (target: <= +10%)")


if __name__ == "__main__":
    main()
