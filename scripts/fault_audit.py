"""The fault and security audit of issues 14 and 21, rerunnable: how many kills resume exactly, how many
bad inputs get one paragraph and leave nothing behind, how many crafted files are refused without running,
how many symbolic links are never written through, how many races lose nothing.

    python scripts/fault_audit.py                 # 20 kills (about 6 minutes on a 2-core CPU)
    python scripts/fault_audit.py --kills 54      # the audit's count
    python scripts/fault_audit.py --only links,races

1. Kills: one toy run (a checkpoint every step, dropout and input noise: random streams in play) is
   killed with SIGKILL at seeded random moments, resumed after each kill (a torn metrics line appended
   before every other resume, as a full disk leaves one), and at the end compared with an uninterrupted
   run: the weights and every logged row must be identical.
2. Bad inputs: each command line of BAD must exit 2 (1 for an I/O fault) with one line on stderr, no
   traceback, and no new file or folder in the working directory.
3. Security probes: crafted files whose loading would run a payload (it writes a marker file); each must
   be refused (non-zero exit, one paragraph) and the marker must not appear. Configs with a `_target_`
   nested at any depth (under a setting, in a list, Hydra's `_args_`) through every reader.
4. Links: a run or report folder whose files are symbolic links to a file outside; every command that
   writes there must leave that file as it was (refused with one paragraph, or the link replaced).
5. Loaders (issue 32): every way to load a config or code from elsewhere, typed or written into a run
   folder (.hydra/overrides.yaml, a checkpoint's recorded choices): nothing runs, typed ones exit 2.
6. Deletions (issue 32): the working directory, the folder above it and home as output folders, overwrite
   on a sweep or a folder with no run, a run into a sweep's folder: no file of the user's goes.
7. Races and overwrites: two commands into one folder at once, commands started in the same second under
   the default name, a finished run or sweep run again, a sweep into a running sweep's folder: every run
   that finished stays whole, every refused command exits non-zero and changes nothing.
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
KILL_RUN = [
    "data.source.n_train=1500",
    "trainer.epochs=4",
    "trainer.progress=false",
    "trainer.checkpoint_every=1",
    "trainer.log_every=5",
    "model.dropout=0.2",
    "regularization.input_noise=0.1",
]

BAD = [
    ["activation=rellu"],
    ["optimizer=adamm"],
    ["trainer.epoch=3"],
    ["optimizer.lrr=0.1"],
    ["optimizer.lr=abc"],
    ["optimizer.lr=-1"],
    ["optimizer.lr=inf"],
    ["optimizer.lr=1e400"],
    ["optimizer.lr=nan"],
    ["+trainer.foo=1"],
    ["+colour=red"],
    ["trainer.batch_size=0"],
    ["trainer.epochs=-3"],
    ["data.val_fraction=1.5"],
    ["model.dropout=1.0"],
    ["model.hidden=[64,-1]"],
    ["model.dropout_kind=gaussian"],
    ["trainer.precision=fp8"],
    ["loss=bce", "data=spirals"],
    ["model=cnn"],
    ["activation=true"],
    ["model=3"],
    ["transfer.mode=freeze"],
    ["transfer.init_from=/nowhere"],
    ["sweep.on_failure=maybe"],
    ["resume=/nowhere"],
    ["resume=."],
    ["hydra.run.dir=/proc/nnlab/run"],
    ["hydra.run.dir=" + "a" * 300],
    ["-m", "optimizer.lr=0.1,-1"],
    ["-m", "activation=relu,rellu"],
    ["data=mnist", "data.source.root=./no_data", "data.source.download=false"],
    ["data=mnist", "data.source.root=./offline_root"],
    ["data=cifar10", "data.source.root=./no_cifar"],
    ["regularization.clip_grad_norm=inf"],
    ["early_stopping.metric=r2/val"],
    ["trainer.device=cuda:99"],
    # issue 21
    ["hydra.run.dir="],
    ["hydra.run.dir=."],
    ["trainer.seed=18446744073709551617"],
    ["trainer.seed=-1"],
    ["data.source.n_train=1000000000000"],
    ["model.hidden=[1000000,1000000]"],
    ["optimizer=nesterov", "optimizer.momentum=0"],
    ["optimizer=adam", "optimizer.betas=[0.9,1.5]"],
    ["-m", "trainer.seed=range(3,1)"],
    ["+optimizer.foreach={_target_:torch.load,f:x.pt,weights_only:false}"],
    ["model.hidden=[8,{_target_:builtins.eval}]"],
    ["optimizer._target_=nnlab.training.setup.instantiate"],
    ["loss._target_=nnlab.cli.main"],
    # issue 32
    ["-m", "trainer.seed=0,1", "hydra.launcher.max_members=0"],
    ["-m", "trainer.seed=0,1", "hydra.launcher.max_members=-3"],
    ["trainer.threads=100000"],
    ["-m", "hparams_search=coarse", "hydra.sweeper.n_trials=0"],
    ["-m", "hparams_search=coarse", "hydra.sweeper.n_trials=-1"],
    ["-m", "hparams_search=coarse", "hydra.sweeper.n_jobs=0"],
    ["trainer.batch_size=1", "model.batch_norm=true"],
    ["hydra.run.dir=~"],
    ["-m", "trainer.seed=0,1", "hydra.sweep.dir=."],
    ["-m", "trainer.seed=0,1", "hydra.sweep.dir=..", "overwrite=true"],
    ["hydra.sweep.subdir=../x", "-m", "trainer.seed=0,1"],
]


def nnlab(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "nnlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def rows(run: Path) -> list[dict]:
    """The rows as readers see them (nnlab report, a resume): a torn last line is not a row."""
    from nnlab.run_files.records import read_rows

    return [
        {k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))}
        for r in read_rows(run / "metrics.jsonl")
    ]


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
            proc = subprocess.Popen(
                [sys.executable, "-m", "nnlab", "train", *args],
                cwd=root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
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
        same_weights = out.returncode == 0 and all(
            torch.equal(a, b) for a, b in zip(weights(run).values(), weights(ref).values())
        )
        same_rows = out.returncode == 0 and rows(run) == rows(ref)
        leftovers = list(run.rglob("*.tmp*"))
        if same_weights and same_rows and not leftovers:
            exact += kills_here
        else:
            failures.append(
                f"{run.name}: weights {'ok' if same_weights else 'differ'}, rows {'ok' if same_rows else 'differ'}, "
                f"leftovers {len(leftovers)}, exit {out.returncode}"
            )
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
            failures.append(
                f"{' '.join(args)[:60]}: exit {out.returncode}, {len(err.splitlines())} lines, left {left[:3]}"
            )
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
        (run / ".hydra" / "overrides.yaml").write_text(
            f"- data.source._target_=builtins.eval\n- +data.source._args_=[\"__import__('os').system('touch {marker}')\"]\n"
        )
        return ["train", "trainer.epochs=3", f"resume={run}"]

    def nested(key, value, command):
        """A run folder whose config.yaml holds `key: value` with a torch.load(weights_only=False) of the payload
        nested in it, read by `command` (ensemble, load_run, resume through .hydra/overrides.yaml)."""

        def make(marker, folder):
            payload = folder / "payload.pt"
            torch.save(_Payload(marker), payload)
            for name in ("probe_base", "probe_base2"):
                subprocess.run(["cp", "-r", str(root / name), str(folder / name)], check=True)
            run = folder / "probe_base"
            load = {"_target_": "torch.load", "f": str(payload), "weights_only": False}
            cfg = OmegaConf.load(run / "config.yaml")
            OmegaConf.update(cfg, key, value(load), merge=False, force_add=True)
            (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
            if command == "ensemble":
                return ["ensemble", str(folder)]
            if command == "load_run":
                return [
                    "__python__",
                    f"import sys, nnlab\ntry:\n    nnlab.load_run({str(run)!r})\n"
                    "except nnlab.errors.ConfigError as e:\n    sys.exit(f'refused: {e}')",
                ]
            item = (
                f"++{key}={json.dumps(value(load)).replace(chr(34), '')}"  # Hydra's grammar: {_target_:torch.load,...}
            )
            (run / ".hydra" / "overrides.yaml").write_text(yaml_list([item]))
            return ["train", "trainer.epochs=3", f"resume={run}"]

        return make

    case("CIFAR-10 data_batch_1 with a pickle payload", cifar_batch, None)
    case("CIFAR-10 test_batch that is a payload", cifar_test_batch, None)
    case("ensemble member config: data.source torch.load(weights_only=false)", member_config("torch.load"), None)
    case("ensemble member config: data.source builtins.eval", member_config("builtins.eval"), None)
    case("resume of a checkpoint holding a pickled object", pickled_checkpoint("resume"), None)
    case("transfer.init_from a checkpoint holding a pickled object", pickled_checkpoint("transfer"), None)
    case("ensemble of a checkpoint holding a pickled object", pickled_checkpoint("ensemble"), None)
    case("resume whose saved overrides name builtins.eval", resume_config, None)
    for key, value in (
        ("optimizer.foreach", lambda load: load),
        ("model.hidden", lambda load: [8, load]),
        ("loss.weights", lambda load: {"inner": [load]}),
    ):
        for command in ("ensemble", "load_run", "resume"):
            case(f"{command} of a config with a target nested at {key}", nested(key, value, command), None)
    for i, (name, make, _) in enumerate(cases):
        folder = root / f"probe{i}"
        folder.mkdir()
        marker = folder / "MARKER"
        args = make(marker, folder)
        out = python(args[1], folder) if args[0] == "__python__" else nnlab(args, folder)
        ok = out.returncode != 0 and not marker.exists() and "Traceback" not in out.stderr
        held += ok
        if not ok:
            failures.append(
                f"{name}: exit {out.returncode}, marker {'written' if marker.exists() else 'absent'}, "
                f"{out.stderr.strip()[:200]}"
            )
    return held, len(cases), failures


def yaml_list(items: list[str]) -> str:
    import yaml

    return yaml.safe_dump(items)


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python code in a fresh interpreter (nnlab.load_run): a refusal is an exception, exit 1."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def links(root: Path) -> tuple[int, int, list[str]]:
    """A file outside, linked from every place a command writes; the file must stay as it was."""
    base = root / "link_base"
    assert nnlab(["train", *TINY, f"hydra.run.dir={base}"], root).returncode == 0
    assert nnlab(["train", *TINY, "trainer.seed=1", f"hydra.run.dir={root / 'link_base2'}"], root).returncode == 0
    cases = [
        ("resume", "train.log"),
        ("resume", "metrics.jsonl"),
        ("resume", "curves.png"),
        ("resume", "summary.json"),
        ("resume", ".hydra/hydra.yaml"),
        ("resume", "checkpoints/.last.pt.tmp-1"),
        ("resume", ".lock"),
        ("report", "report.csv"),
        ("report", "report.md"),
        ("report", "report.png"),
        ("ensemble", "ensemble.json"),
        ("ensemble", "ensemble"),
        ("sweep", "trainer.seed=0/train.log"),
        ("sweep", "trainer.seed=1"),
        ("sweep", ".submitit"),
        ("resume", "hard:train.log"),
        ("resume", "hard:metrics.jsonl"),
    ]
    held, failures = 0, []
    for i, (command, name) in enumerate(cases):
        folder = root / f"link{i}"
        folder.mkdir()
        outside = folder / "outside"
        outside.write_text("the user's own file\n")
        runs = folder / "runs"
        runs.mkdir()
        subprocess.run(["cp", "-r", str(base), str(runs / "a")], check=True)
        subprocess.run(["cp", "-r", str(root / "link_base2"), str(runs / "b")], check=True)
        where = {"resume": runs / "a", "report": runs, "ensemble": runs, "sweep": folder / "sweep"}[command]
        link = where / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() and link.is_dir():
            subprocess.run(["rm", "-r", str(link)], check=True)
        if name.startswith("hard:"):  # a hard link: the file has a second name outside
            link = where / name[5:]
            outside.unlink()
            os.link(link, outside)
            outside_text = outside.read_text()
        else:
            link.unlink(missing_ok=True)
            link.symlink_to(outside)
            outside_text = "the user's own file\n"
        args = {
            "resume": ["train", "trainer.epochs=3", f"resume={runs / 'a'}"],
            "report": ["report", str(runs)],
            "ensemble": ["ensemble", str(runs)],
            "sweep": ["train", "-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={folder / 'sweep'}"],
        }[command]
        out = nnlab(args, folder)
        ok = outside.read_text() == outside_text and "Traceback" not in out.stderr
        held += ok
        if not ok:
            failures.append(
                f"{command} with {name} a link: exit {out.returncode}, outside file changed, {out.stderr.strip()[:160]}"
            )
    return held, len(cases), failures


def loaders(root: Path) -> tuple[int, int, list[str]]:
    """Every way to make nnlab load a config or code from elsewhere (issue 32): typed on the command line,
    written into a run folder's .hydra/overrides.yaml or its checkpoint's recorded choices, then resumed and
    diagnosed. Each must run nothing (the marker never appears) and, typed, be refused in one paragraph."""
    import torch

    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    marker = elsewhere / "MARKER"
    (elsewhere / "evil.yaml").write_text(
        f"# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: builtins.open\n"
        f"      file: {marker}\n      mode: w\n"
    )
    climb = "../" * 12 + str(elsewhere).lstrip("/")
    typed = [
        [f"experiment={climb}/evil"],
        [f"activation=relu,{climb}/evil"],
        [f"--config-dir={elsewhere}", "--config-name=evil"],
        [f"--config-path={elsewhere}"],
        [f"--experimental-rerun={elsewhere}/x.pickle"],
        ["+hydra.callbacks.x._target_=builtins.open", f"+hydra.callbacks.x.file={marker}"],
        [f"hydra.searchpath=[file://{elsewhere}]"],
        [f"hydra.output_subdir={elsewhere}"],
        [f"hydra.job_logging.handlers.file.filename={marker}"],
        [f"hydra.sweeper.settings=[['experiment={climb}/evil']]"],
        [f"hydra.sweeper.params.experiment=choice(activations,{climb}/evil)"],
        ["experiment@_global_=activations"],
        ["hydra/launcher=../../x"],
        ["hydra.launcher._target_=builtins.open"],
    ]
    held, failures, tried = 0, [], 0
    for i, args in enumerate(typed):
        cwd = root / f"loader{i}"
        cwd.mkdir()
        out = nnlab(["train", "-m", *TINY, *args], cwd)
        ok = (
            out.returncode == 2
            and len(out.stderr.strip().splitlines()) == 1
            and not marker.exists()
            and not any(cwd.iterdir())
        )
        held, tried = held + ok, tried + 1
        if not ok:
            failures.append(f"typed {' '.join(args)[:70]}: exit {out.returncode}, marker {marker.exists()}")
    base = root / "loader_run"
    assert nnlab(["train", *TINY, f"hydra.run.dir={base}"], root).returncode == 0
    (base / ".hydra" / "overrides.yaml").write_text(
        f"- --experimental-rerun={elsewhere}/x.pickle\n- --config-dir={elsewhere}\n- --config-name=evil\n"
        f"- +hydra.callbacks.x._target_=builtins.open\n- +hydra.callbacks.x.file={marker}\n- experiment={climb}/evil\n"
    )
    for args in (
        ["train", f"resume={base}", "trainer.epochs=3"],
        ["doctor", str(base)],
        ["train", f"hydra.run.dir={base}", "resume=auto", "trainer.epochs=4"],
    ):
        out = nnlab(args, root)
        ok = out.returncode == 0 and not marker.exists()
        held, tried = held + ok, tried + 1
        if not ok:
            failures.append(
                f"a crafted overrides.yaml through {args[0]} {args[1][:20]}: exit {out.returncode}, marker {marker.exists()}"
            )
    state = torch.load(base / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["choices"]["experiment"] = f"{climb}/evil"
    torch.save(state, base / "checkpoints" / "last.pt")
    out = nnlab(["train", f"resume={base}", "trainer.epochs=5"], root)
    ok = out.returncode == 2 and not marker.exists()
    held, tried = held + ok, tried + 1
    if not ok:
        failures.append(f"a crafted choice in a checkpoint: exit {out.returncode}, marker {marker.exists()}")
    return held, tried, failures


def deletions(root: Path) -> tuple[int, int, list[str]]:
    """overwrite=true and the output folder against a user's files (issue 32): the working directory, the
    folder above it and the home folder as output folders (run and sweep), overwrite on a sweep folder and
    on a folder holding no run, a run into a sweep's folder. Every file of the user's must stay."""
    held, failures, tried = 0, [], 0
    home = root / "home"
    work = home / "work"
    (work / "src").mkdir(parents=True)
    mine = {work / "mythesis.txt": "years", work / "src" / "main.py": "code", home / "notes.txt": "mine"}
    for path, text in mine.items():
        path.write_text(text)
    env_home = {**os.environ, "HOME": str(home)}
    for where in (".", "..", "~"):
        for mode in (["-m", "trainer.seed=0,1"], []):
            key = "hydra.sweep.dir" if mode else "hydra.run.dir"
            out = subprocess.run(
                [sys.executable, "-m", "nnlab", "train", *mode, *TINY, f"{key}={where}", "overwrite=true"],
                cwd=work,
                env=env_home,
                capture_output=True,
                text=True,
                timeout=300,
            )
            ok = out.returncode == 2 and all(p.read_text() == t for p, t in mine.items())
            held, tried = held + ok, tried + 1
            if not ok:
                failures.append(f"{key}={where} overwrite=true: exit {out.returncode}")
    sweep = root / "del_sweep"
    args = ["train", "-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={sweep}"]
    nnlab(args, root)
    (sweep / "thesis.txt").write_text("mine")
    out = nnlab([*args, "overwrite=true"], root)
    ok = out.returncode == 0 and (sweep / "thesis.txt").read_text() == "mine"
    held, tried = held + ok, tried + 1
    if not ok:
        failures.append(f"overwrite=true on a sweep folder with a user's file: exit {out.returncode}")
    plain = root / "plain"
    plain.mkdir()
    (plain / "data.csv").write_text("1,2\n")
    out = nnlab(["train", *TINY, f"hydra.run.dir={plain}", "overwrite=true"], root)
    ok = out.returncode == 0 and (plain / "data.csv").read_text() == "1,2\n"
    held, tried = held + ok, tried + 1
    if not ok:
        failures.append(f"overwrite=true on a folder holding no run: exit {out.returncode}")
    out = nnlab(["train", *TINY, f"hydra.run.dir={sweep}", "overwrite=true"], root)
    resumed = nnlab([*args, "resume=auto"], root)
    ok = out.returncode == 2 and resumed.returncode == 0
    held, tried = held + ok, tried + 1
    if not ok:
        failures.append(f"a run into a sweep's folder: exit {out.returncode}, the sweep's resume {resumed.returncode}")
    return held, tried, failures


def races(root: Path) -> tuple[int, int, list[str]]:
    """Commands that compete for a folder, or would replace a finished run."""
    import hashlib

    def snapshot(folder: Path) -> dict:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"
        }

    def start(args, cwd):
        return subprocess.Popen(
            [sys.executable, "-m", "nnlab", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    held, tried, failures = 0, 0, []

    def check(name, ok, detail=""):
        nonlocal held, tried
        tried += 1
        held += bool(ok)
        if not ok:
            failures.append(f"{name}: {detail}"[:240])

    for i in range(3):  # two commands into one named folder, started together
        run = root / f"race{i}"
        procs = [start(["train", *TINY, f"hydra.run.dir={run}"], root) for _ in range(2)]
        codes = sorted(p.wait() for p in procs)
        status = (
            json.loads((run / "summary.json").read_text()).get("status") if (run / "summary.json").is_file() else None
        )
        check("two commands into one folder", codes == [0, 2] and status == "ok", f"exits {codes}, status {status}")
    cwd = root / "same_second"
    cwd.mkdir()
    procs = [start(["train", *TINY], cwd) for _ in range(4)]  # the default, time-stamped name
    codes = [p.wait() for p in procs]
    made = sorted((cwd / "outputs" / "runs").iterdir())
    whole = [
        json.loads((r / "summary.json").read_text())["status"] == "ok" for r in made if (r / "summary.json").is_file()
    ]
    check(
        "four commands in the same second, default names",
        codes == [0] * 4 and len(made) == 4 and all(whole) and len(whole) == 4,
        f"exits {codes}, {len(made)} folders",
    )
    run = root / "race0"
    before = snapshot(run)
    out = nnlab(["train", *TINY, f"hydra.run.dir={run}"], root)
    check("a finished run run again", out.returncode == 2 and snapshot(run) == before, f"exit {out.returncode}")
    sweep = ["train", "-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={root / 'sweep'}"]
    assert nnlab(sweep, root).returncode == 0
    before = snapshot(root / "sweep")
    out = nnlab(sweep, root)
    check(
        "a finished sweep run again",
        out.returncode == 2 and snapshot(root / "sweep") == before,
        f"exit {out.returncode}",
    )
    long = ["train", "-m", *TINY, "trainer.epochs=300", "trainer.seed=0,1", f"hydra.sweep.dir={root / 'busy'}"]
    first = start(long, root)
    deadline = time.time() + 120
    while not list((root / "busy").rglob("metrics.jsonl")) and time.time() < deadline:
        time.sleep(0.05)
    second = nnlab([*long[:-1], f"hydra.sweep.dir={root / 'busy'}"], root)
    first.send_signal(signal.SIGTERM)
    first.wait()
    check("a second sweep into a running sweep's folder", second.returncode == 2, f"exit {second.returncode}")
    resumed = nnlab([*long, "resume=auto"], root)
    statuses = [json.loads(p.read_text())["status"] for p in (root / "busy").rglob("summary.json")]
    check(
        "that sweep, interrupted and resumed",
        resumed.returncode == 0 and statuses == ["ok", "ok"],
        f"exit {resumed.returncode}, {statuses}",
    )
    return held, tried, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--only", default="kills,bad,loaders,deletions,probes,links,races")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parts = {
            "kills": ("kills resumed exactly (rows and weights)", lambda: kills(args.kills, args.seed, root)),
            "bad": ("bad inputs with one paragraph and nothing left behind", lambda: bad_inputs(root)),
            "loaders": ("configs and code from elsewhere: nothing loaded or run", lambda: loaders(root)),
            "deletions": (
                "a user's files against the output folder and overwrite=true: all kept",
                lambda: deletions(root),
            ),
            "probes": ("security probes held (nothing ran)", lambda: probes(root)),
            "links": ("symbolic links never written through", lambda: links(root)),
            "races": ("races and re-runs that lost nothing", lambda: races(root)),
        }
        for key in args.only.split(","):
            title, run = parts[key]
            start = time.perf_counter()
            held, tried, failures = run()
            print(f"{title}: {held}/{tried}  ({time.perf_counter() - start:.0f} s)", flush=True)
            for f in failures:
                print(f"  did not hold: {f}", flush=True)


if __name__ == "__main__":
    main()
