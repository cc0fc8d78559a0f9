"""Note 002's claim, measured as bands: "big nets are easier to train, then prune". A large MLP trained on
MNIST and pruned (nnlab prune) to the weight count of a small one, against the small one trained from scratch
for as many epochs in all, over the same seeds.

    python scripts/prune_claim.py                     # 784-256-256-10 pruned 90% vs 784-32-32-10; 3 seeds
    python scripts/prune_claim.py --seeds 5 --out outputs/prune_claim

Needs MNIST under $NNLAB_DATA_DIR (or ~/.cache/nnlab/data). Prints each arm's acc/test band and the verdict
(Welch's t-test), and writes prune_claim.json in --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from nnlab.compare import against, band

COMMON = ["data=mnist", "data.subset=5000", "trainer.progress=false", "diagnostics.histograms_every=0"]


def weights(hidden: list[int], inputs: int = 784, outputs: int = 10) -> int:
    sizes = [inputs, *hidden, outputs]
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def nnlab(*args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "nnlab", *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"nnlab {' '.join(args)} failed:\n{out.stderr[-2000:]}")


def test_accuracy(folder: Path) -> list[float]:
    summaries = [json.loads(p.read_text()) for p in sorted(folder.rglob("summary.json"))]
    return [s["metrics"]["acc/test"] for s in summaries if s.get("status") == "ok"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--large", default="256,256")
    ap.add_argument("--small", default="32,32")
    ap.add_argument("--epochs", type=int, default=5, help="the large net's training; the small one gets these + 2")
    ap.add_argument("--out", type=Path, default=Path("outputs/prune_claim"))
    a = ap.parse_args()
    large, small = [int(w) for w in a.large.split(",")], [int(w) for w in a.small.split(",")]
    amount = 1 - weights(small) / weights(large)
    seeds = ",".join(map(str, range(a.seeds)))
    nnlab(
        "train",
        "-m",
        *COMMON,
        f"model.hidden=[{a.large}]",
        f"trainer.epochs={a.epochs}",
        f"trainer.seed={seeds}",
        f"hydra.sweep.dir={a.out / 'large'}",
        "overwrite=true",
    )
    nnlab(
        "prune",
        str(a.out / "large"),
        f"prune.amount={amount:.6f}",
        "trainer.epochs=2",
        f"hydra.sweep.dir={a.out / 'pruned'}",
    )
    nnlab(
        "train",
        "-m",
        *COMMON,
        f"model.hidden=[{a.small}]",
        f"trainer.epochs={a.epochs + 2}",
        f"trainer.seed={seeds}",
        f"hydra.sweep.dir={a.out / 'small'}",
        "overwrite=true",
    )
    arms = {name: test_accuracy(a.out / name) for name in ("large", "pruned", "small")}
    result = {"amount": amount, "weights": {"large": weights(large), "small": weights(small)}}
    for name, values in arms.items():
        b = band(values)
        result[name] = {"acc/test": values, "mean": b.mean, "ci95": b.half}
        print(f"{name:7s} acc/test {b.mean:.4f} ± {b.half:.4f} (n={b.n})")
    result["verdict"] = against(arms["pruned"], arms["small"], higher_is_better=True)
    print(
        f"pruned {a.large} ({amount:.1%} of its weights zero: {weights(small)} left) vs {a.small} from scratch: "
        f"{result['verdict']}"
    )
    (a.out / "prune_claim.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
