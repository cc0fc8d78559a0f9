"""`nnlab doctor`: a run's alarms, and their advice tested.

    nnlab doctor [OVERRIDES...]        diagnose the config with one run, then test the fixes
    nnlab doctor RUN_FOLDER [...]      the alarms of a run already made, then test the fixes

Each alarm carries its advice as data (alarms.py: `fixes`, override sets; `optimizer.lr*10` scales the
config's own value). The doctor turns them into candidate settings, the most fundamental alarm's first,
one fix from each alarm in turn (at most doctor.candidates), and trains the config as it is and every
candidate over doctor.seeds seeds as one sweep (hydra.sweeper.settings through the batched launcher:
settings that differ only in stackable keys train as one stack). The answer: each candidate's band of
the monitored metric and of the test score, its verdict against the config as it is (Welch's t-test),
whether the alarm that suggested it is gone in every seed, and the command line of the best fix.

Everything lands in one folder: DOCTOR/diagnosis (the run), DOCTOR/sweep (a sweep like any other:
nnlab report, TensorBoard, the grids) and DOCTOR/doctor.md (the table).
"""

from __future__ import annotations

import math
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnlab.cli.command_line import quoted_path
from nnlab.commands.landscape import number
from nnlab.config.overrides import override_key
from nnlab.run_files.folder import write_file
from nnlab.run_files.records import read_summary

# The most fundamental first: a run that diverges or whose gradients vanish says little about the rest.
ORDER = (
    "divergence",
    "exploding_gradients",
    "vanishing_gradients",
    "initial_loss",
    "saturation",
    "flat_loss",
    "update_ratio",
    "loss_curve",
    "dead_units",
    "underfitting",
    "overfitting",
)

# An alarm that follows from a more fundamental one: its fixes are tried only where none of those is raised
# (a loss that never moves also underfits; more capacity does not make it move).
CONSEQUENCE_OF = {"underfitting": ("divergence", "flat_loss", "vanishing_gradients", "exploding_gradients")}

# What the trial's runs set besides their seeds: no histograms (~5% of the doctor's time; the metrics, alarms,
# figures and TensorBoard scalars stay)
TRIAL = ("diagnostics.histograms_every=0",)

USAGE = """usage: nnlab doctor [OVERRIDES...]             diagnose this config with one run, then test the fixes
       nnlab doctor RUN_FOLDER [OVERRIDES...]  the alarms of a finished run, then test the fixes

For every alarm the run raised, the doctor trains the fixes it suggests and the config as it is over
doctor.seeds seeds (default 5) as one sweep, and says which fix is better (Welch's t-test on the bands),
whether the alarm is gone in every seed, and the command line of the best fix. doctor.candidates (default
4) bounds the fixes tried. The folder: outputs/doctor/DATE_TIME, or hydra.sweep.dir=PATH.
"""


@dataclass
class Candidate:
    overrides: tuple[str, ...]  # as Hydra takes them (scaled values resolved)
    alarms: list[str]  # the alarms that suggested it
    values: list[float] = field(default_factory=list)  # the monitored metric, one per seed that finished well
    scores: list[float] = field(default_factory=list)  # the test score
    failed: int = 0  # seeds that diverged or failed
    still: int = 0  # seeds that raised one of `alarms` again
    verdict: str = ""

    @property
    def name(self) -> str:
        return " ".join(self.overrides) if self.overrides else "as it is"


def main(argv: list[str], train: Callable[..., int]) -> int:
    """`train(args, brief=False)` runs `nnlab train ARGS` in this process (the CLI's, handed in) and
    returns its exit code."""
    from nnlab.errors import ConfigError
    from nnlab.run_files.saved_config import run_overrides
    from nnlab.views.console import exit_with

    if any(a in ("-h", "--help") for a in argv):
        print(USAGE, end="")
        return 0
    try:
        run, given = _run_folder(argv)
        base = [*run_overrides(run), *given] if run else list(given)
        base = [a for a in base if not a.startswith(("hydra.", "resume=", "overwrite="))]
        cfg, choices = _config(base)
        folder, lock = _folder(given)
    except ConfigError as e:
        exit_with(str(e))
    try:
        return _diagnose(run, base, cfg, choices, folder, train)
    finally:
        lock.__exit__()  # the folder's .lock goes with it


def _diagnose(run: Path | None, base: list[str], cfg, choices: dict, folder: Path, train) -> int:
    """The run's alarms (a diagnosis run of its own where no run folder is given), their candidates, the trial."""
    from nnlab.views.console import console, error, shown

    if run is None:
        console.print(f"[bold]nnlab doctor[/]: one run of {_budget(cfg)} to see what alarms it raises", soft_wrap=True)
        run = folder / "diagnosis"
        try:
            code = train([*base, quoted_path(f"hydra.run.dir={run}")], brief=True)
        except SystemExit:  # refused before training (its paragraph is said): no folder left holding nothing
            if not any(p.name != ".lock" for p in folder.iterdir()):
                shutil.rmtree(folder)
            raise
        if code != 0 or not (run / "summary.json").is_file():
            error(
                f"the config does not train: {run} says why (its error.txt or train.log). The doctor treats a "
                "run's alarms, not a config that cannot run: nnlab check with the same overrides tests it step by step.",
                title="doctor",
            )
            return 1
    summary = read_summary(run)
    if summary is None or summary["status"] not in ("ok", "diverged"):
        what = "no readable summary.json" if summary is None else f"status {shown(summary['status'])}"
        error(
            f"{shown(run)} has {what}: the doctor treats the alarms of a run that trained (status ok or diverged). "
            f"Its error.txt or train.log says what stopped it; nnlab check with its overrides tests the config step by step.",
            title="doctor",
        )
        return 1
    raised = summary["alarms"]
    if not raised:
        console.print(f"no alarm in {shown(run)} (status {summary['status']}): nothing to treat.", soft_wrap=True)
        return 0
    console.print(f"alarms of {shown(run)}: {', '.join(shown(a['name']) for a in raised)}", soft_wrap=True)
    candidates, refused = candidates_for(raised, cfg, choices, cfg.doctor.candidates)
    good, unbuilt = _buildable(base, candidates, choices)
    for text in [*(f"left out: {t}" for t in refused), *(f"cannot be built: {t}" for t in unbuilt)]:
        console.print(f"  {text}", soft_wrap=True, highlight=False)
    if not good:
        error(
            f"none of the fixes of {', '.join(shown(a['name']) for a in raised)} can be tried on this config (see above).",
            title="doctor",
        )
        return 1
    return treat(good, base, cfg, choices, folder, train)


def treat(candidates: list[Candidate], base: list[str], cfg, choices: dict, folder: Path, train) -> int:
    """Train the config as it is and every candidate over the seeds as one sweep; say the answer."""
    from nnlab import metrics
    from nnlab.views.console import console, shown

    settings = _settings(candidates, cfg, choices)
    seeds = [cfg.trainer.seed + i for i in range(cfg.doctor.seeds)]
    console.print(
        f"[bold]testing {len(candidates)} fix{'es' if len(candidates) > 1 else ''}[/] against the config as it is, "
        f"{len(seeds)} seeds each: {len(settings) * len(seeds)} runs of {_budget(cfg)}",
        soft_wrap=True,
    )
    sweep = folder / "sweep"
    keys = {override_key(o) for s in settings for o in s}
    keys |= {"trainer.seed", *map(override_key, TRIAL)}
    code = train(
        [
            "-m",
            *(a for a in base if override_key(a) not in keys),
            *TRIAL,
            "hydra.sweeper.params=null",
            f"hydra.sweeper.settings={_literal(settings)}",
            f"trainer.seed={','.join(map(str, seeds))}",
            quoted_path(f"hydra.sweep.dir={sweep}"),
        ],
        brief=True,
    )
    if not sweep.is_dir():  # refused before any run (its paragraph is said)
        return code or 1
    current, metric = Candidate((), []), metrics.followed(cfg.early_stopping.metric)
    test = _measure(sweep, [current, *candidates], settings, cfg.early_stopping.metric)
    for c in candidates:
        c.verdict = _verdict(c, current, metrics.better(metric) > 0)
    tried = {override_key(o) for c in candidates for o in c.overrides}
    now = {k: _value(cfg, k) for k in tried}
    table, notes = answer([current, *candidates], metric, test, len(seeds), base, now)
    console.print(f"[bold]the doctor's answer[/] ({len(seeds)} seeds a setting)")
    show(table, notes)
    write_file(folder / "doctor.md", markdown(table, notes))
    console.print(
        f"everything under {shown(folder)}: nnlab report {shlex.quote(str(sweep))}; tensorboard --logdir {shlex.quote(str(folder))}",
        soft_wrap=True,
        highlight=False,
    )
    return 0


def _budget(cfg) -> str:
    return f"{cfg.trainer.epochs} epoch{'s' if cfg.trainer.epochs != 1 else ''} (trainer.epochs)"


def _run_folder(argv: list[str]) -> tuple[Path | None, list[str]]:
    """The run folder the command names (its first word, where that is not an override), and the rest."""
    from nnlab.errors import ConfigError

    flags = [a for a in argv if a.startswith("-")]
    if flags:
        raise ConfigError(
            f"nnlab doctor takes overrides (KEY=VALUE) or a run folder, not {flags[0]}: it runs one run "
            "and then its own sweep (see nnlab doctor --help)."
        )
    if not argv or ("=" in argv[0] and not Path(argv[0]).is_dir()):  # a run's folder may hold `=` in its name
        return None, list(argv)
    path = Path(argv[0])
    if not (path / "summary.json").is_file():
        what = "does not exist" if not path.exists() else "is not a finished run (it has no summary.json)"
        raise ConfigError(
            f"{argv[0]} {what}. nnlab doctor takes a run folder (one with a summary.json, e.g. "
            "outputs/runs/DATE_TIME) or overrides (KEY=VALUE) to diagnose with a run of its own."
        )
    return path, list(argv[1:])


def _folder(given: list[str]):
    """hydra.sweep.dir=PATH, else outputs/doctor/DATE_TIME: a new folder, held by this process (a second
    doctor in the same second gets _2; run_folder.claim)."""

    from nnlab.errors import ConfigError
    from nnlab.run_files import folder as run_folder

    named = next((a.split("=", 1)[1].strip("'\"") for a in given if a.startswith("hydra.sweep.dir=")), None)
    folder = Path(named or f"outputs/doctor/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    if named and (folder.is_symlink() or (folder.exists() and any(folder.iterdir()))):
        raise ConfigError(
            f"hydra.sweep.dir={named} already holds files (or is a link): the doctor writes a new folder. "
            "Name another one."
        )
    folder, _, lock = run_folder.claim(folder, fresh_name=named is None)
    return folder, lock


def _config(base: list[str]):
    """The config as the doctor will train it (validated), and its config groups' choices."""
    from omegaconf import OmegaConf, open_dict

    from nnlab.cli.command_line import compose
    from nnlab.config.validate import validate

    cfg = compose(base, hydra=True)  # a bad override: one paragraph, before any run
    choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices))
    with open_dict(cfg):
        del cfg["hydra"]
    validate(cfg)
    return cfg, choices


def candidates_for(raised: list[dict], cfg, choices: dict, limit: int) -> tuple[list[Candidate], list[str]]:
    """The fixes of the raised alarms as concrete override sets: one from each alarm in turn (the most
    fundamental alarm first), each once, none that the config already has; at most `limit`. Also what was
    left out and why."""
    names = {a["name"] for a in raised}
    causes = {a["name"]: sorted(names & set(CONSEQUENCE_OF.get(a["name"], ()))) for a in raised}
    notes = [f"the fixes of {name}: it follows from {', '.join(found)}" for name, found in causes.items() if found]
    raised = [a for a in raised if not causes[a["name"]]]
    ranked = sorted(raised, key=lambda a: ORDER.index(a["name"]) if a["name"] in ORDER else len(ORDER))
    queues = [[tuple(f) for f in a.get("fixes") or ()] for a in ranked]
    out: dict[tuple, Candidate] = {}
    while any(queues):
        for alarm, queue in zip(ranked, queues):
            if not queue:
                continue
            fix = queue.pop(0)
            try:
                overrides = tuple(_resolve(o, cfg, choices) for o in fix)
            except ValueError as e:
                notes.append(f"{' with '.join(fix)} ({alarm['name']}): {e}")
                continue
            if all(_current(override_key(o), cfg, choices) == o.split("=", 1)[1] for o in overrides):
                notes.append(f"{' '.join(overrides)} ({alarm['name']}): the config has it already")
                continue
            if overrides in out:
                out[overrides].alarms.append(alarm["name"])
            elif len(out) < limit:
                out[overrides] = Candidate(overrides, [alarm["name"]])
            else:
                notes.append(f"{' '.join(overrides)} ({alarm['name']}): beyond doctor.candidates={limit}")
    return list(out.values()), notes


def _resolve(override: str, cfg, choices: dict) -> str:
    """`optimizer.lr*10` as `optimizer.lr=0.01` (the config's value scaled); KEY=VALUE as it is."""
    from nnlab.training.alarms import scaled

    found = scaled(override)
    if found is None:
        return override
    key, factor = found
    value = _value(cfg, key)
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or (isinstance(value, list) and value)):
        raise ValueError(f"the config has no number {key} to scale")
    if isinstance(value, list):
        return f"{key}=[{','.join(str(max(1, round(v * factor))) for v in value)}]"
    new = max(1, round(value * factor)) if isinstance(value, int) else value * factor
    return f"{key}={new:.6g}" if isinstance(new, float) else f"{key}={new}"


def _value(cfg, key: str) -> Any:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _current(key: str, cfg, choices: dict) -> str:
    """A key's value in the config as an override writes it: a config group's choice (`he_normal`), a
    value (`0.001`, `[64,64]`, `null`)."""
    if key in choices:
        return str(choices[key])
    value = _value(cfg, key)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return f"[{','.join(map(str, value))}]"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _buildable(base: list[str], candidates: list[Candidate], choices: dict) -> tuple[list[Candidate], list[str]]:
    """The candidates whose config composes and validates; the others, each with its one paragraph."""
    from nnlab.cli.command_line import compose
    from nnlab.config.validate import validate
    from nnlab.errors import ConfigError

    good, bad = [], []
    for c in candidates:
        keys = {override_key(o) for o in c.overrides}
        try:
            validate(compose([*(a for a in base if override_key(a) not in keys), *c.overrides]))
            good.append(c)
        except ConfigError as e:
            bad.append(f"{c.name} ({', '.join(c.alarms)}): {e}")
    return good, bad


def _settings(candidates: list[Candidate], cfg, choices: dict) -> list[list[str]]:
    """The sweep's settings: the config as it is, then each candidate, every one naming its value of each
    key any candidate sets (so that runs are named by what differs). A key under a config group that a
    candidate changes (init.bias under init) comes from the new option."""
    keys = list(dict.fromkeys(override_key(o) for c in candidates for o in c.overrides))
    current = [f"{k}={_current(k, cfg, choices)}" for k in keys]
    out = [current]
    for c in candidates:
        own = {override_key(o) for o in c.overrides}
        groups = [k for k in own if k in choices]
        rest = [
            o
            for o in current
            if override_key(o) not in own and not any(override_key(o).startswith(g + ".") for g in groups)
        ]
        out.append([*rest, *c.overrides])
    return out


def _literal(settings: list[list[str]]) -> str:
    """hydra.sweeper.settings' value in Hydra's grammar: [['init=zeros','optimizer.lr=0.001'],[...]]."""
    return "[" + ",".join("[" + ",".join(f"'{o}'" for o in s) + "]" for s in settings) + "]"


def _measure(sweep: Path, rows: list[Candidate], settings: list[list[str]], metric: str) -> str:
    """Each setting's seeds, read from the sweep's runs: the monitored metric, the test score, failures
    and the alarms raised again. Returns the test score's name (acc/test, r2/test)."""
    from nnlab import metrics
    from nnlab.commands.report import collect, task_of

    runs = collect(sweep) if sweep.is_dir() else []
    test = f"{metrics.score(task_of(runs))}/test"
    wanted = [{override_key(o): o.split("=", 1)[1] for o in s} for s in settings]
    for run in runs:
        row = next((r for r, w in zip(rows, wanted) if all(run.overrides.get(k) == v for k, v in w.items())), None)
        if row is None:
            continue
        value = metrics.objective(run.summary, metric)
        if run.status == "ok" and math.isfinite(value):
            row.values.append(value)
            if run.metric(test) is not None:
                row.scores.append(run.metric(test))
        else:
            row.failed += 1
        row.still += any(a.get("name") in row.alarms for a in run.summary.get("alarms", []))
    return test


def _verdict(c: Candidate, current: Candidate, higher: bool) -> str:
    """Against the config as it is: a candidate whose seeds all finish where the config's all fail is
    better; one that fails where the config does not is worse; otherwise Welch's t-test on the bands."""
    from nnlab.compare import against

    if not current.values and c.values and not c.failed:
        return "better"
    if c.failed and not current.failed:
        return "worse"
    return against(c.values, current.values, higher)


def answer(
    rows: list[Candidate], metric: str, test: str, seeds: int, base: list[str], now: dict | None = None
) -> tuple[list[list[str]], list[str]]:
    """The doctor's table (a header, then the config as it is and each candidate) and its closing lines;
    `now`: the config's own values of the settings the candidates change (the edge advice: edge())."""
    from nnlab import metrics
    from nnlab.compare import band

    table = [["setting", metric, test, "verdict", "its alarm"]]
    for r in rows:
        gone = (
            ""
            if not r.alarms
            else f"{', '.join(dict.fromkeys(r.alarms))} {'gone' if r.still == 0 else f'{r.still}/{seeds}'}"
        )
        failed = f" ({r.failed}/{seeds} failed)" if r.failed else ""
        verdict = "reference" if not r.verdict else "tied" if r.verdict.startswith("not") else r.verdict
        table.append([r.name, _band(band(r.values)) + failed, _band(band(r.scores)), verdict, gone])
    notes = [
        f"bands: mean ± 95% confidence interval over {seeds} seeds; verdict against the config as it is "
        f"(Welch's t-test on {metric}, p < 0.05): better, worse, or tied (not distinguishable with {seeds} "
        "seeds); its alarm: the alarm that suggested the fix, gone in every seed or raised in how many"
    ]
    better = [r for r in rows[1:] if r.verdict == "better"]
    sign = 1 if metrics.better(metric) > 0 else -1
    if better:
        best = max(better, key=lambda r: sign * sum(r.values) / len(r.values))
        keys = {override_key(o) for o in best.overrides}
        notes.append(
            f"best fix ({', '.join(dict.fromkeys(best.alarms))}): "
            + " ".join(["nnlab train", *(a for a in base if override_key(a) not in keys), *best.overrides])
        )
        notes += edge(best, rows[1:], base, now or {})
    elif all(r.verdict == "worse" for r in rows[1:]):
        notes.append("no fix is better than the config as it is: every one is worse")
    else:
        notes.append(
            f"no fix is better than the config as it is with {seeds} seeds (more seeds, doctor.seeds=N, may "
            "tell them apart)"
        )
    return table, notes


def edge(best: Candidate, rows: list[Candidate], base: list[str], now: dict) -> list[str]:
    """Where the best fix sets a number (a scaled rate) to the largest or smallest value tried (the config's
    own among them): the best may lie beyond, so the next sweep goes on that way (the notes' "make sure the
    best value is not at the edge of the range"), at the spacing the fix took."""
    said = []
    for o in best.overrides:
        key, _, text = o.partition("=")
        value, own = number(text), number(now.get(key))
        others = (number(p.partition("=")[2]) for r in rows for p in r.overrides if p.startswith(key + "="))
        tried = [v for v in (own, *others) if v is not None]
        if value is None or own is None or value == own or len(set(tried)) < 2 or min(tried) < value < max(tried):
            continue
        if not (value > 0 and own > 0):
            continue
        step = (value / own) ** 0.5
        ahead = ",".join(f"{value * step**k:.3g}" for k in range(4))
        way = "largest" if value == max(tried) else "smallest"
        rest = [a for a in base if override_key(a) != key]
        said.append(
            f"{key}: the best fix is the {way} value tried ({value:.3g}): the best may lie beyond it; next: "
            + " ".join(["nnlab train -m", *rest, f"{key}={ahead}", "trainer.seed=0,1,2,3,4"])
        )
    return said


def markdown(table: list[list[str]], notes: list[str]) -> str:
    head, *body = table
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---|---|", *("| " + " | ".join(r) + " |" for r in body)]
    return "\n".join([*lines, "", *notes]) + "\n"


def show(table: list[list[str]], notes: list[str]) -> None:
    """The table in the terminal, fitted to its width (numbers whole: tables.fit), then the notes."""
    from rich.padding import Padding
    from rich.text import Text

    from nnlab.views import tables
    from nnlab.views.console import console, shown

    head, *body = table
    keep = (9, 9, 6, 8, 7)
    styles = [None, *("bold green" if r[3] == "better" else "red" if r[3] == "worse" else None for r in body[1:])]
    for narrow in (
        False,
        True,
    ):  # narrow: bands to 3 decimals (0.692±0.002) and the alarms folded, before a column goes
        cols = [
            tables.Column(
                h,
                [_narrow(r[i]) if narrow and i in (1, 2) else r[i] for r in body],
                keep=keep[i],
                folds=i == 0,
                wraps=narrow and i == 4,
                justify="right" if i in (1, 2) else "left",
            )
            for i, h in enumerate(head)
        ]
        grid, dropped = tables.fit(cols, console.width, styles)
        if not dropped:
            break
    if dropped:  # too narrow for a table of every column: a paragraph per setting, every number in it
        for row, style in zip(body, styles):
            values = ", ".join(
                f"{h} {_narrow(v) if i in (1, 2) else v}" for i, (h, v) in enumerate(zip(head, row)) if i and v
            )
            console.print(f"[{style or 'default'}]{shown(row[0])}[/]: {shown(values)}", highlight=False)
    else:
        console.print(grid)
    for note in notes:
        if note.startswith("best fix"):  # a command to paste: one line
            console.print(f"  {note}", soft_wrap=True, highlight=False)
        else:
            console.print(Padding(Text(note), (0, 0, 0, 2), expand=False), highlight=False)


def _narrow(band: str) -> str:
    """`0.6920 ± 0.0017` as `0.692±0.002` (a narrow terminal's table)."""
    mean, _, half = band.partition(" ± ")
    try:
        return f"{float(mean):.3f}" + (f"±{float(half):.3f}" if half else "")
    except ValueError:
        return band


def _band(b) -> str:
    if b is None:
        return "-"
    return f"{b.mean:.4f}" if b.n == 1 else f"{b.mean:.4f} ± {b.half:.4f}"
