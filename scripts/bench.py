"""How fast is nnlab next to the loops people write by hand? One run, side by side, same machine, ratios.

    python scripts/bench.py                      # everything (about 5 minutes on a 2-core CPU)
    python scripts/bench.py --only mlp,startup   # some of it: mlp, cnn, startup, sweep, stacks, cnnstack, executors, doctor, toy, loadrun, floor, member
    python scripts/bench.py --only stacks --repeats 1   # batched sweeps against one run and the basic launcher
    python scripts/bench.py --device cuda --only mlp,cnn --cnn-steps 0 --variants fp32,bf16,fp16,compile
                                                 # the MLP and CNN loops on a GPU, whole epochs, nnlab's options
    python scripts/bench.py --json bench.json    # also write the numbers

1. MNIST MLP 784-64-128-64-10, ReLU, Adam, batch 128, 55k training images: seconds per epoch of nnlab
   (default logging and diagnostics) vs (a) the tutorial loop: torchvision `MNIST` with a per-sample
   ToTensor/Normalize transform through a DataLoader, and (b) a bare tensor loop with no logging.
2. The classic MNIST CNN (conv 3x3 32, conv 3x3 64, max-pool, dropout, dense 128, batch 64): the same
   three, timed over the first --cnn-steps steps of an epoch (the per-step cost is flat over an epoch).
3. Start-up: wall time of `nnlab train` on a toy set for one epoch minus that of `python -c "import torch"`,
   and minus that of the least PyTorch script that makes the same run (BARE_SCRIPT).
4. Sweep throughput: 8 default toy runs through the joblib launcher (2 jobs) vs the same 8 one after another.
5. `make train`'s run (`nnlab train`, the defaults) end to end.
6. `nnlab doctor init=zeros` against `nnlab train init=zeros` (--only doctor).
7. A 48-run seed sweep as 2 submitit_local tasks of 24 stacked runs against Hydra's submitit_local launcher
   (--only executors).
8. `nnlab.load_run` of a toy run in a fresh process after `import torch` (--only loadrun; target < 1 s).
Every case runs in its own process; peak memory is that process's maximum resident set (and the peak
CUDA memory on a GPU). Each case is repeated (--repeats) and the minimum is reported (the median too).

Targets on a 2-core CPU (issue 6): MLP >= 8x faster than the tutorial loop and <= 1.3x the bare loop;
CNN <= 1.15x the bare loop; start-up < 2 s; sweep <= 0.6x sequential; the default toy run < 20 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NNLAB_DATA_DIR", REPO.parent / "shared" / "data"))
MLP = ["model.hidden=[64,128,64]", "trainer.batch_size=128", "optimizer=adam"]
CNN = ["model=cnn_classic", "trainer.batch_size=64", "optimizer=adam"]
TRAIN_IMAGES = 55_000


# ----------------------------------------------------------------------------------------------------
# The cases, each run in a child process: `python scripts/bench.py --case NAME`; prints one JSON line.


def reference_model(kind: str, device):
    """The very same network nnlab builds (same class, same initialization), for the hand-written loops."""
    import torch
    from hydra.utils import instantiate

    from nnlab.training.setup import build_model

    cfg = compose(["data=mnist", *(MLP if kind == "mlp" else CNN)])
    torch.manual_seed(0)
    return build_model(cfg, (1, 28, 28), 10, instantiate(cfg.activation)).to(device)


def mnist_tensors(device):
    """The 55k training images as one normalized float tensor on the device (what a bare loop would do)."""
    import torch

    from nnlab.data.images import mnist

    x, y, _, _ = mnist(str(DATA), download=False)
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:TRAIN_IMAGES]
    return ((x[keep].float() / 255 - 0.1307) / 0.3081).to(device), y[keep].to(device)


def compose(overrides: list[str]):
    from nnlab.cli.command_line import compose as nnlab_compose

    return nnlab_compose([f"data.source.root={DATA}", *overrides])


def tutorial_loop(kind: str, device: str, epochs: int, max_steps: int | None) -> list[float]:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    full = datasets.MNIST(str(DATA), train=True, download=False, transform=transform)
    train = Subset(full, torch.randperm(len(full))[:TRAIN_IMAGES].tolist())
    loader = DataLoader(train, batch_size=64 if kind == "cnn" else 128, shuffle=True)
    model = reference_model(kind, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        start, running = time.perf_counter(), 0.0
        for i, (x, y) in enumerate(loader):
            if max_steps and i == max_steps:
                break
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            running += loss.item()  # as the tutorials do
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def bare_loop(kind: str, device: str, epochs: int, max_steps: int | None) -> list[float]:
    import torch
    import torch.nn.functional as F

    model = reference_model(kind, device)
    x_all, y_all = mnist_tensors(device)
    batch = 64 if kind == "cnn" else 128
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(y_all), device=device)
        for i, s in enumerate(range(0, len(y_all), batch)):
            if max_steps and i == max_steps:
                break
            idx = perm[s : s + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            loss.backward()
            opt.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


# nnlab's options timed with --variants (on a GPU): name -> overrides
VARIANTS = {
    "fp32": [],
    "bf16": ["trainer.precision=bf16"],
    "fp16": ["trainer.precision=fp16"],
    "compile": ["trainer.compile=true"],
    "compile+bf16": ["trainer.compile=true", "trainer.precision=bf16"],
    "no-channels-last": ["trainer.channels_last=false"],
    "bf16+no-channels-last": ["trainer.precision=bf16", "trainer.channels_last=false"],
}


def nnlab_loop(kind: str, device: str, epochs: int, max_steps: int | None, variant: str = "fp32") -> list[float]:
    """nnlab's own training loop (train.train) with the default logging and diagnostics; the seconds of
    each epoch's training pass as nnlab logs them (time/epoch_s; validation is timed apart)."""
    from nnlab.training.loop import train
    from nnlab.training.member import prepare

    extra = [f"data.subset={max_steps * 64}"] if max_steps else []
    cfg = compose(
        [
            "data=mnist",
            *(MLP if kind == "mlp" else CNN),
            f"trainer.epochs={epochs}",
            f"trainer.device={device}",
            "trainer.progress=false",
            *VARIANTS[variant],
            *extra,
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        train([prepare(cfg, tmp, quiet=True)])
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    return [r["time/epoch_s"] for r in rows if "time/epoch_s" in r]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_case(name: str, device: str, epochs: int, cnn_steps: int) -> dict:
    kind, loop = name.split(":")
    steps = (cnn_steps or None) if kind == "cnn" else None
    if loop.startswith("nnlab"):  # nnlab, or nnlab/VARIANT
        times = nnlab_loop(kind, device, epochs, steps, loop.partition("/")[2] or "fp32")
    else:
        times = {"tutorial": tutorial_loop, "bare": bare_loop}[loop](kind, device, epochs, steps)
    out = {"case": name, "epoch_s": times, "peak_rss_mb": peak_rss_mb()}
    if device.startswith("cuda"):
        import torch

        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def peak_rss_mb(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------------------------------------------
# The driver.


def child(args: list[str], cwd: Path | None = None) -> tuple[float, str, float]:
    """Run a command in a fresh process: (wall seconds, stdout, its peak memory in MiB: the largest of its
    processes' peak RSS, or where it runs several at once (a sweep's groups: hydra.launcher.workers) the
    peak of their proportional set sizes summed, sampled every 0.1 s: shared pages counted once)."""
    start = time.perf_counter()
    code = (
        "import resource, subprocess, sys, json; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(p.stderr); print(json.dumps([p.returncode, p.stdout, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    tree = _TreeMemory(p.pid)
    stdout, stderr = p.communicate()
    tree.stop()
    wall = time.perf_counter() - start
    if p.returncode != 0 or not stdout.strip():
        raise SystemExit(f"{' '.join(args)} failed:\n{stderr[-3000:]}")
    rc, out, rss = json.loads(stdout.strip().splitlines()[-1])
    if rc != 0:
        raise SystemExit(f"{' '.join(args)} exited with {rc}:\n{stderr[-3000:]}")
    return wall, out, max(rss, tree.peak_mb)


class _TreeMemory:
    """The peak of a process tree's summed PSS (Linux /proc; 0 elsewhere), sampled in a thread while
    more than one of its processes runs nnlab (a single process's peak RSS says the rest)."""

    def __init__(self, root: int) -> None:
        import threading

        self.root, self.peak_mb, self.done = root, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.1):
            parents = {}
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
            tree, grew = {self.root}, True
            while grew:
                more = {pid for pid, parent in parents.items() if parent in tree} - tree
                tree |= more
                grew = bool(more)
            total = 0.0
            for pid in tree:
                try:
                    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
                except OSError:
                    continue
                total += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)
            if len(tree) > 2:  # the wrapper, nnlab and processes of its own (its groups)
                self.peak_mb = max(self.peak_mb, total / 1024)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def loops(kind: str, args) -> dict:
    """The three loops (and nnlab's --variants), interleaved over the repeats; per loop the best epoch of each repeat."""
    extra = [f"nnlab/{v}" for v in args.variants.split(",") if v != "fp32"]
    names = [f"{kind}:{loop}" for loop in ("tutorial", "bare", "nnlab", *extra)]
    results = {n: {"epoch_s": [], "peak_rss_mb": 0.0, "peak_cuda_mb": 0.0} for n in names}
    for r in range(args.repeats):
        for name in names:
            epochs = 1 if name.endswith("tutorial") and kind == "mlp" else args.epochs
            if name.endswith("tutorial") and r > 0 and not args.repeat_tutorial:
                continue  # one tutorial epoch is slow and steady enough
            _, out, _ = child(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    name,
                    "--device",
                    args.device,
                    "--epochs",
                    str(epochs),
                    "--cnn-steps",
                    str(args.cnn_steps),
                ]
            )
            res = json.loads(out.strip().splitlines()[-1])
            warm = res["epoch_s"][1:] or res["epoch_s"]  # the first epoch pays for warm-up where there are more
            results[name]["epoch_s"].append(min(warm))
            results[name]["peak_rss_mb"] = max(results[name]["peak_rss_mb"], res["peak_rss_mb"])
            results[name]["peak_cuda_mb"] = max(results[name]["peak_cuda_mb"], res.get("peak_cuda_mb", 0.0))
            print(f"  {name:<14} {min(warm):8.3f} s", flush=True)
    return results


def nnlab_cli(*overrides: str, cwd: Path) -> tuple[float, float]:
    wall, _, rss = child([sys.executable, "-m", "nnlab", "train", "trainer.progress=false", *overrides], cwd=cwd)
    return wall, rss


# The least a PyTorch script can do for the same run: the default toy set's 800 training points (two
# moons), the default 2-64-64-2 ReLU MLP, Adam, one epoch of batch 32, the loss printed. Its first
# optimizer step imports torch._dynamo (torch.optim wraps add_param_group and step), as nnlab's does.
BARE_SCRIPT = """
import math, torch
g = torch.Generator().manual_seed(0)
y = torch.arange(1000) % 2
t = torch.rand(1000, generator=g) * math.pi
x = torch.stack([torch.cos(t), torch.sin(t)], 1)
x = torch.where(y[:, None] == 1, torch.stack([1 - x[:, 0], 0.5 - x[:, 1]], 1), x) + 0.2 * torch.randn(1000, 2, generator=g)
x, y = x[:800], y[:800]
model = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for idx in torch.randperm(800).split(32):
    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
print(loss.item())
"""


def startup(args) -> dict:
    walls, torch_walls, bare_walls, rss = [], [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            torch_walls.append(child([sys.executable, "-c", "import torch"])[0])
            bare_walls.append(child([sys.executable, "-c", BARE_SCRIPT])[0])
            wall, rss = nnlab_cli("trainer.epochs=1", f"hydra.run.dir={tmp}/run{i}", cwd=Path(tmp))
            walls.append(wall)
    return {
        "nnlab_1_epoch_s": walls,
        "import_torch_s": torch_walls,
        "bare_script_s": bare_walls,
        "peak_rss_mb": rss,
        "overhead_s": min(walls) - min(torch_walls),
        "overhead_vs_bare_s": min(walls) - min(bare_walls),
    }


def sweep(args) -> dict:
    seeds = "trainer.seed=" + ",".join(str(i) for i in range(8))
    out = {"sequential_s": [], "joblib_s": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(max(1, args.repeats - 1)):
            for key, launcher in (
                ("sequential_s", []),
                ("joblib_s", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]),
            ):
                wall, rss = nnlab_cli("-m", seeds, *launcher, f"hydra.sweep.dir={tmp}/{key}{i}", cwd=Path(tmp))
                out[key].append(wall)
                out[key.replace("_s", "_peak_rss_mb")] = rss
    out["ratio"] = min(out["joblib_s"]) / min(out["sequential_s"])
    return out


def stacks(args) -> dict:
    """Batched sweeps (issue 15): whole-command wall times and peak RSS, side by side, repeats interleaved."""
    root = REPO.parent / "shared" / "data"
    mnist = [
        "data=mnist",
        f"data.source.root={root}",
        "model.hidden=[64,128,64]",
        "trainer.batch_size=128",
        "trainer.epochs=2",
    ]
    cases = {
        "one run": ["hydra.run.dir={tmp}/one{i}"],
        "16 seeds, batched": ["-m", "trainer.seed=range(16)", "hydra.sweep.dir={tmp}/b16_{i}"],
        "16 seeds, basic": ["-m", "trainer.seed=range(16)", "hydra/launcher=basic", "hydra.sweep.dir={tmp}/s16_{i}"],
        "64 seeds, batched": ["-m", "trainer.seed=range(64)", "hydra.sweep.dir={tmp}/b64_{i}"],
        "256 seeds, batched": ["-m", "trainer.seed=range(256)", "hydra.sweep.dir={tmp}/b256_{i}"],
        "256 seeds, batched, one process": [
            "-m",
            "trainer.seed=range(256)",
            "hydra.launcher.workers=1",
            "hydra.sweep.dir={tmp}/b256p_{i}",
        ],
        "landscape, 1000 runs": ["-m", "experiment=landscape", "hydra.sweep.dir={tmp}/land_{i}"],
        "landscape, 1000 runs, one process": [
            "-m",
            "experiment=landscape",
            "hydra.launcher.workers=1",
            "hydra.sweep.dir={tmp}/landp_{i}",
        ],
        "initialization, 5 runs (basic)": [
            "-m",
            "experiment=initialization",
            "trainer.seed=0",
            "hydra/launcher=basic",
            "hydra.sweep.dir={tmp}/i5_{i}",
        ],
        "initialization x 8 seeds, batched": [
            "-m",
            "experiment=initialization",
            "trainer.seed=range(8)",
            "hydra.sweep.dir={tmp}/i40_{i}",
        ],
        "MNIST MLP 8 seeds, batched": ["-m", *mnist, "trainer.seed=range(8)", "hydra.sweep.dir={tmp}/m8b_{i}"],
        "MNIST MLP 8 seeds, basic": [
            "-m",
            *mnist,
            "trainer.seed=range(8)",
            "hydra/launcher=basic",
            "hydra.sweep.dir={tmp}/m8s_{i}",
        ],
    }
    if args.stack_cases:
        cases = {k: v for k, v in cases.items() if any(c in k for c in args.stack_cases.split(","))}
    out = {name: {"wall_s": [], "peak_rss_mb": 0.0} for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, overrides in cases.items():
                wall, rss = nnlab_cli(*(o.format(tmp=tmp, i=i) for o in overrides), cwd=Path(tmp))
                out[name]["wall_s"].append(wall)
                out[name]["peak_rss_mb"] = max(out[name]["peak_rss_mb"], rss)
                print(f"  {name:<36} {wall:7.1f} s  {rss:6.0f} MiB", flush=True)
    return out


def cnn_stack(args, k: int = 8, steps: int = 20) -> dict:
    """Can conv nets stack (issues 15, 22)? K classic MNIST CNNs (batch 64, Adam), one training step of all
    K: one after another; as one vmapped model (torch.func.functional_call over stacked parameters, one
    Adam over the stacked tensors); as one grouped-convolution model (the members' batches side by side as
    channels, every convolution with groups=K, the dense layers as batched products, one Adam): seconds per
    step of all K, minimum of interleaved repeats."""
    import torch
    from torch.func import functional_call, stack_module_state, vmap

    device = torch.device(args.device)
    models = [reference_model("cnn", device) for _ in range(k)]
    x = torch.randn(k, 64, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (k, 64), device=device)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    params, buffers = stack_module_state(models)
    params = {n: p.detach().requires_grad_() for n, p in params.items()}
    stacked_opt = torch.optim.Adam(params.values(), lr=1e-3)
    base = models[0]

    def one(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    batched = vmap(one, randomness="different")

    grouped_params, grouped = _grouped_cnn(models)
    grouped_opt = torch.optim.Adam(grouped_params, lr=1e-3)

    def grouped_step():
        grouped_opt.zero_grad()
        out = grouped(x)  # [K, B, 10]
        torch.nn.functional.cross_entropy(out.reshape(-1, 10), y.reshape(-1), reduction="none").view(k, -1).mean(
            1
        ).sum().backward()
        grouped_opt.step()

    def sequential():
        for m, o, xb, yb in zip(models, opts, x, y):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(xb), yb).backward()
            o.step()

    def stacked():
        stacked_opt.zero_grad()
        batched(params, buffers, x, y).sum().backward()
        stacked_opt.step()

    times: dict = {"one after another": [], "vmap stack": [], "grouped conv stack": []}
    for _ in range(args.repeats):
        for name, fn in (
            ("one after another", sequential),
            ("vmap stack", stacked),
            ("grouped conv stack", grouped_step),
        ):
            fn()  # warm
            sync(args.device)
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            sync(args.device)
            times[name].append((time.perf_counter() - start) / steps)
    return {"k": k, "s_per_step": times}


def _grouped_cnn(models):
    """K same-shape CNNs as one model: [K, B, C, H, W] in, [K, B, outputs] out. Convolutions with groups=K
    over the members' channels side by side ([B, K*C, H, W]); pooling, activations and dropout as they are;
    after the flatten, each Linear as one batched product over [K, out, in] weights."""
    import torch
    from torch import nn

    k = len(models)
    leaves = [[m for m in model.modules() if not list(m.children())] for model in models]
    params, plan = [], []
    for layers in zip(*leaves):
        first = layers[0]
        if isinstance(first, nn.Conv2d):
            w = torch.cat([m.weight.detach() for m in layers]).requires_grad_()
            b = torch.cat([m.bias.detach() for m in layers]).requires_grad_()
            params += [w, b]
            plan.append(("conv", first, w, b))
        elif isinstance(first, nn.Linear):
            w = torch.stack([m.weight.detach() for m in layers]).requires_grad_()
            b = torch.stack([m.bias.detach() for m in layers]).requires_grad_()
            params += [w, b]
            plan.append(("linear", first, w, b))
        elif isinstance(first, nn.Flatten):
            plan.append(("flatten", first, None, None))
        else:
            plan.append(("apply", first, None, None))

    def forward(x):
        _, batch = x.shape[:2]
        h = x.transpose(0, 1).reshape(batch, -1, *x.shape[3:])
        for kind, mod, w, b in plan:
            if kind == "conv":
                h = torch.nn.functional.conv2d(h, w, b, mod.stride, mod.padding, mod.dilation, groups=k)
            elif kind == "flatten":
                h = h.reshape(batch, k, -1).transpose(0, 1)
            elif kind == "linear":
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            else:
                h = mod(h)
        return h

    return params, forward


def doctor(args) -> dict:
    """`nnlab doctor init=zeros` (a diagnosis run, then the config and 4 fixes x 5 seeds) against the run alone
    (`nnlab train init=zeros`), whole commands, interleaved (issue 24: <= 4x)."""
    out = {"one_run_s": [], "doctor_s": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out["one_run_s"].append(nnlab_cli("init=zeros", f"hydra.run.dir={tmp}/one{i}", cwd=Path(tmp))[0])
            cmd = [
                sys.executable,
                "-m",
                "nnlab",
                "doctor",
                "init=zeros",
                "trainer.progress=false",
                f"hydra.sweep.dir={tmp}/doc{i}",
            ]
            out["doctor_s"].append(child(cmd, cwd=Path(tmp))[0])
            print(f"  one run {out['one_run_s'][-1]:.1f} s, doctor {out['doctor_s'][-1]:.1f} s", flush=True)
    out["ratio"] = statistics.median(d / o for d, o in zip(out["doctor_s"], out["one_run_s"]))
    return out


def executors(args) -> dict:
    """A 48-run seed sweep as 2 submitit_local tasks of 24 stacked runs (hydra.launcher.executor) against
    Hydra's own submitit_local launcher (one process a run), whole commands, interleaved (issue 25: <= 0.5x)."""
    seeds = ["-m", "trainer.seed=range(48)"]
    cases = {
        "executor=submitit_local, 2 tasks": [
            *seeds,
            "hydra.launcher.executor=submitit_local",
            "hydra.launcher.max_members=24",
        ],
        "hydra/launcher=submitit_local": [*seeds, "hydra/launcher=submitit_local"],
    }
    out = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for n, (name, overrides) in enumerate(cases.items()):
                out[name].append(nnlab_cli(*overrides, f"hydra.sweep.dir={tmp}/e{n}_{i}", cwd=Path(tmp))[0])
                print(f"  {name:<36} {out[name][-1]:7.1f} s", flush=True)
    return out


def toy(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        walls = [nnlab_cli(f"hydra.run.dir={tmp}/run{i}", cwd=Path(tmp)) for i in range(args.repeats)]
    return {"wall_s": [w for w, _ in walls], "peak_rss_mb": max(r for _, r in walls)}


FLOOR = """
import sys, time
import torch
torch.set_num_threads(1)
K, steps = int(sys.argv[1]), 750          # the default run: moons, 800 points, batch 32, 30 epochs = 750 steps
g = torch.Generator().manual_seed(0)
x, y = torch.randn(K, 800, 2, generator=g), torch.randint(0, 2, (K, 800), generator=g)
sizes = [2, 64, 64, 2]
w = [(torch.randn(K, o, i, generator=g) * (2 / i) ** 0.5).requires_grad_() for i, o in zip(sizes, sizes[1:])]
b = [torch.zeros(K, o).requires_grad_() for o in sizes[1:]]
opt = torch.optim.Adam([*w, *b], lr=1e-3, foreach=True)
start = time.perf_counter()
for s in range(steps):
    idx = torch.randint(0, 800, (K, 32), generator=g)
    h = torch.gather(x, 1, idx[..., None].expand(K, 32, 2))
    for j, (wj, bj) in enumerate(zip(w, b)):
        h = torch.baddbmm(bj.unsqueeze(1), h, wj.transpose(1, 2))
        h = h.relu() if j < 2 else h
    loss = torch.nn.functional.cross_entropy(h.reshape(-1, 2), torch.gather(y, 1, idx).reshape(-1)) * K
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
print(time.perf_counter() - start)
"""


def floor(args) -> dict:
    """The floor of a sweep of K default runs: their arithmetic alone, as the fastest known way computes it
    (K MLPs 2-64-64-2 side by side in [K, out, in] tensors, batched matmuls, one foreach Adam; 750 steps, no
    logging, no files) against the start-up every command pays (python -c 'import torch, hydra') and the
    whole nnlab command (--only stacks)."""
    out = {"start_s": [], "arithmetic_s": {}}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        child([sys.executable, "-c", "import torch, hydra, omegaconf, tensorboard"])
        out["start_s"].append(time.perf_counter() - t0)
    for k in (1, 16, 64, 256):
        out["arithmetic_s"][k] = [
            float(child([sys.executable, "-c", FLOOR, str(k)])[1].strip()) for _ in range(args.repeats)
        ]
        print(f"  K={k:<4} arithmetic {min(out['arithmetic_s'][k]):.2f} s", flush=True)
    return out


MEMBER = """
import json, os, pickle, sys, tempfile, time
from pathlib import Path
import torch, yaml
from torch import nn
torch.set_num_threads(1)
from omegaconf import OmegaConf
from nnlab.cli.command_line import compose
from nnlab.jobs.stacking import sweep_config
from nnlab.run_files.events import EventFile
from nnlab.config.text import config_yaml
from nnlab.run_files.tracking import Tracker
from nnlab.training.setup import setup

def per(f, n):
    f()
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n

base = compose(["trainer.seed=0"], hydra=True)
task = compose(["trainer.seed=3"])
frozen = pickle.dumps(base, protocol=pickle.HIGHEST_PROTOCOL)
plain = OmegaConf.to_container(base, resolve=False)
folder = Path(tempfile.mkdtemp())
parts = {}
parts["config"] = (per(lambda: sweep_config(base, ["trainer.seed=0"], ["trainer.seed=5"]), 40),
                   per(lambda: pickle.loads(frozen), 40))
def record():
    for name, node in (("config.yaml", task), ("hydra.yaml", base.hydra), ("overrides.yaml", ["trainer.seed=5"])):
        (folder / name).write_text(config_yaml(node) if not isinstance(node, list) else yaml.safe_dump(node))
def record_floor():
    for name, node in (("config.yaml", plain), ("hydra.yaml", plain["hydra"]), ("overrides.yaml", ["trainer.seed=5"])):
        (folder / name).write_text(yaml.dump(node, Dumper=yaml.CSafeDumper, sort_keys=False))
parts["job record"] = (per(record, 40), per(record_floor, 40))
def bare_setup():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return torch.optim.Adam(model.parameters(), lr=1e-3)
parts["set-up"] = (per(lambda: setup(task, shared=True), 20), per(bare_setup, 40))
tracker = Tracker(folder)
rows = [(i, {"step/loss": 0.5 + i, "step/grad_norm": 1.5}) for i in range(10)]
events = EventFile(folder / "floor")
def rows_floor():
    for step, values in rows:
        events.file.write(json.dumps({"step": step, **values}).encode())
parts["750 step rows"] = (per(lambda: tracker.rows(rows, 1), 200) * 75, per(rows_floor, 200) * 75)
print(json.dumps(parts))
"""


def member(args) -> dict:
    """What a member of a stack costs beyond its share of the arithmetic, part by part, in-process (one
    thread): today's code against the fastest known way to do the same part (its config: a prepared copy
    unpickled; its job record: three YAML files dumped by libyaml from plain dicts; its set-up: the same MLP
    and Adam built by hand; its 750 per-step rows: the JSON lines alone, no TensorBoard record)."""
    runs = [json.loads(child([sys.executable, "-c", MEMBER])[1].strip().splitlines()[-1]) for _ in range(args.repeats)]
    return {part: [min(r[part][0] for r in runs), min(r[part][1] for r in runs)] for part in runs[0]}


LOAD_RUN = """
import sys, time
import torch
start = time.perf_counter()
import nnlab
run = nnlab.load_run(sys.argv[1])
run.predict_proba(torch.zeros(4, 2)); run.history
print(time.perf_counter() - start)
"""


def load_run(args) -> dict:
    """nnlab.load_run of the default toy run in a fresh process, after `import torch` (what a notebook has
    already paid): import nnlab, load, predict_proba, history."""
    with tempfile.TemporaryDirectory() as tmp:
        nnlab_cli("trainer.epochs=2", f"hydra.run.dir={tmp}/run", cwd=Path(tmp))
        seconds = [float(child([sys.executable, "-c", LOAD_RUN, f"{tmp}/run"])[1].strip()) for _ in range(args.repeats)]
    return {"load_run_s": seconds}


CASES = {  # --only NAME: (what it says while it runs, the case)
    "startup": ("start-up", startup),
    "sweep": ("sweep: 8 toy runs, sequential vs joblib", sweep),
    "stacks": ("batched sweeps (whole commands)", stacks),
    "cnnstack": ("conv nets stacked (vmap, grouped convolutions) vs one after another", cnn_stack),
    "executors": ("48 seeds through submitit_local: stacks as tasks vs one process a run", executors),
    "doctor": ("nnlab doctor init=zeros against the run alone", doctor),
    "toy": ("the default toy run", toy),
    "loadrun": ("nnlab.load_run of a toy run, after import torch", load_run),
    "floor": ("the floor of a sweep: its arithmetic alone, and start-up", floor),
    "member": ("what a stack's member costs, part by part, against the fastest known way", member),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="mlp,cnn,startup,sweep,stacks,toy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per repeat of the bare and nnlab loops")
    parser.add_argument("--cnn-steps", type=int, default=150, help="CNN steps timed per epoch (0: whole epochs)")
    parser.add_argument("--variants", default="fp32", help=f"nnlab's options to time too: {','.join(VARIANTS)}")
    parser.add_argument("--repeat-tutorial", action="store_true", help="repeat the (slow) tutorial loop too")
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument(
        "--stack-cases", default="", help="with --only stacks: the cases whose names contain these words"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.epochs, args.cnn_steps)))
        return
    import platform

    results: dict = {"device": args.device, "cpus": os.cpu_count(), "platform": platform.platform()}
    if args.device.startswith("cuda"):
        import torch

        results["gpu"] = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    only = args.only.split(",")
    for kind in ("mlp", "cnn"):
        if kind in only:
            print(
                f"{kind.upper()} loops (seconds per epoch{'' if kind == 'mlp' else f', first {args.cnn_steps} steps'}):"
            )
            results[kind] = loops(kind, args)
    for name, (title, case) in CASES.items():
        if name in only:
            print(f"{title} ...", flush=True)
            results[name] = case(args)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def report(r: dict) -> None:
    print(f"\nnnlab benchmarks on {r.get('gpu', r['device'])} ({r['cpus']} CPUs, {r['platform']})")
    print(
        "| case | nnlab | tutorial loop | bare loop | nnlab vs tutorial | nnlab / bare | target | peak RSS MiB (nnlab / tutorial / bare) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, target in (("mlp", (8.0, 1.3)), ("cnn", (None, 1.15))):
        if kind not in r:
            continue
        res = r[kind]
        best = {loop: min(res[f"{kind}:{loop}"]["epoch_s"]) for loop in ("nnlab", "tutorial", "bare")}
        speedup, ratio = best["tutorial"] / best["nnlab"], best["nnlab"] / best["bare"]
        ok = ratio <= target[1] and (target[0] is None or speedup >= target[0])
        goal = (f">= {target[0]:.0f}x faster, " if target[0] else "") + f"<= {target[1]}x bare"
        rss = " / ".join(f"{res[f'{kind}:{loop}']['peak_rss_mb']:.0f}" for loop in ("nnlab", "tutorial", "bare"))
        unit = "s/epoch" if kind == "mlp" else "s/steps"
        print(
            f"| {kind.upper()} ({unit}) | {best['nnlab']:.3f} | {best['tutorial']:.3f} | {best['bare']:.3f} | "
            f"{speedup:.1f}x faster | {ratio:.2f}x | {goal}: {'met' if ok else 'MISSED'} | {rss} |"
        )
        for name in res:
            if name.startswith(f"{kind}:nnlab/"):  # the options (--variants): against the same fp32 loops
                t, variant = min(res[name]["epoch_s"]), name.partition("/")[2]
                print(
                    f"| {kind.upper()} nnlab {variant} | {t:.3f} | | | {best['tutorial'] / t:.1f}x faster | "
                    f"{t / best['bare']:.2f}x | (fp32 bare loop) | {res[name]['peak_rss_mb']:.0f} |"
                )
        if any(v["peak_cuda_mb"] for v in res.values()):
            print(
                "|   peak CUDA MiB | "
                + ", ".join(f"{n.partition(':')[2]} {v['peak_cuda_mb']:.0f}" for n, v in res.items())
                + " | | | | | | |"
            )
    if "startup" in r:
        s = r["startup"]
        ok = s["overhead_s"] < 2
        print(
            f"| start-up: 1-epoch toy run | {min(s['nnlab_1_epoch_s']):.2f} s | | import torch {min(s['import_torch_s']):.2f} s "
            f"| | overhead {s['overhead_s']:.2f} s | < 2 s: {'met' if ok else 'MISSED'} | {s['peak_rss_mb']:.0f} |"
        )
        if "bare_script_s" in s:
            print(
                f"| start-up vs a bare PyTorch script (same run) | {min(s['nnlab_1_epoch_s']):.2f} s | | bare script "
                f"{min(s['bare_script_s']):.2f} s | | overhead {s['overhead_vs_bare_s']:.2f} s | | |"
            )
    if "sweep" in r:
        s = r["sweep"]
        ok = s["ratio"] <= 0.6
        print(
            f"| sweep: 8 toy runs | joblib {min(s['joblib_s']):.1f} s | | sequential {min(s['sequential_s']):.1f} s "
            f"| | {s['ratio']:.2f}x | <= 0.6x: {'met' if ok else 'MISSED'} | {s['joblib_peak_rss_mb']:.0f} / {s['sequential_peak_rss_mb']:.0f} |"
        )
    if "stacks" in r:
        st, best = r["stacks"], {k: min(v["wall_s"]) for k, v in r["stacks"].items()}
        one = best.get("one run")
        targets = {
            "16 seeds, batched": ("one run", 1.5),
            "64 seeds, batched": ("one run", 3.0),
            "256 seeds, batched": ("one run", 6.0),
            "landscape, 1000 runs": ("one run", 40.0),
            "initialization x 8 seeds, batched": ("initialization, 5 runs (basic)", 2.0),
            "MNIST MLP 8 seeds, batched": ("MNIST MLP 8 seeds, basic", 0.5),
            "16 seeds, basic": None,
        }
        print("\n| batched sweeps | wall s | against | ratio | target | peak RSS MiB |\n|---|---|---|---|---|---|")
        for name, wall in best.items():
            against = targets.get(name)
            if against and against[0] in best:
                ratio = wall / best[against[0]]
                print(
                    f"| {name} | {wall:.1f} | {against[0]} | {ratio:.2f}x | <= {against[1]}x: {'met' if ratio <= against[1] else 'MISSED'} "
                    f"| {st[name]['peak_rss_mb']:.0f} |"
                )
            elif one and name != "one run" and name not in targets:  # (a case beside a target: its ratio too)
                print(f"| {name} | {wall:.1f} | one run | {wall / one:.2f}x | | {st[name]['peak_rss_mb']:.0f} |")
            else:
                print(f"| {name} | {wall:.1f} | | | | {st[name]['peak_rss_mb']:.0f} |")
        if one and "16 seeds, batched" in best and "16 seeds, basic" in best:
            print(
                f"| one run vs the basic 16-seed sweep | {one:.1f} | 16 seeds, basic | {one / best['16 seeds, basic']:.2f}x | <= 0.35x | |"
            )
    if "member" in r:
        print("\n| a member's part | today ms | fastest known ms |\n|---|---|---|")
        for part, (today, fastest) in r["member"].items():
            print(f"| {part} | {today * 1e3:.2f} | {fastest * 1e3:.2f} |")
    if "floor" in r:
        f = r["floor"]
        print(
            f"\n| the floor | start-up {min(f['start_s']):.2f} s | "
            + " | ".join(f"K={k} arithmetic {min(v):.2f} s" for k, v in f["arithmetic_s"].items())
            + " |"
        )
    if "cnnstack" in r:
        c = r["cnnstack"]
        seq, vm, gr = (min(c["s_per_step"][n]) for n in ("one after another", "vmap stack", "grouped conv stack"))
        print(
            f"\n| {c['k']} classic CNNs, one step of all (batch 64, Adam) | one after another {seq * 1e3:.0f} ms | "
            f"vmap stack {vm * 1e3:.0f} ms ({vm / seq:.2f}x) | grouped conv stack {gr * 1e3:.0f} ms ({gr / seq:.2f}x) |"
        )
    if "executors" in r:
        e = {k: min(v) for k, v in r["executors"].items()}
        ours, theirs = e["executor=submitit_local, 2 tasks"], e["hydra/launcher=submitit_local"]
        print(
            f"| 48 seeds, executor=submitit_local (2 tasks of 24) | {ours:.1f} s | | hydra/launcher=submitit_local "
            f"{theirs:.1f} s | | {ours / theirs:.2f}x | <= 0.5x: {'met' if ours / theirs <= 0.5 else 'MISSED'} | |"
        )
    if "doctor" in r:
        d = r["doctor"]
        print(
            f"| nnlab doctor init=zeros (diagnosis, then 5 settings x 5 seeds) | {min(d['doctor_s']):.1f} s | | one run "
            f"{min(d['one_run_s']):.1f} s | | {d['ratio']:.2f}x (median of pairs) | <= 4x: {'met' if d['ratio'] <= 4 else 'MISSED'} | |"
        )
    if "loadrun" in r:
        t = r["loadrun"]["load_run_s"]
        print(
            f"| nnlab.load_run (toy run; import nnlab, load, predict_proba, history; after import torch) | "
            f"{min(t):.2f} s (median {statistics.median(t):.2f}) | | | | | < 1 s: {'met' if min(t) < 1 else 'MISSED'} | |"
        )
    if "toy" in r:
        t = r["toy"]
        ok = min(t["wall_s"]) < 20
        print(
            f"| default toy run (`make train`) | {min(t['wall_s']):.1f} s (median {statistics.median(t['wall_s']):.1f}) | | | | | "
            f"< 20 s: {'met' if ok else 'MISSED'} | {t['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
