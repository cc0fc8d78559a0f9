"""A run's files around the training loop: what it opens with (config.yaml, environment.json, the start
banner, the metrics rows a resume keeps, TensorBoard's texts and layout) and what it closes with (the
closing figures, curves.png, then summary.json, written last: a run killed while closing has none and
resumes), plus what TensorBoard's HParams tab shows of it. prepare() makes a Member: a run up to its first
step, which the training loop (train.py) trains, alone or in a stack.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig

from nnlab import metrics as task_metrics
from nnlab.config.schema import flatten
from nnlab.nn import bare, eval_mode
from nnlab.run_files import checkpoint, records
from nnlab.run_files import folder as run_folder
from nnlab.run_files.tracking import Tracker, environment, has_events
from nnlab.training.setup import Experiment, model_summary, setup
from nnlab.views import figures, painter
from nnlab.views.console import tensorboard_command


class JobRecord(Protocol):
    """What a run keeps of Hydra's record of its job (jobs.task.Job has it): its group choices, its
    command-line overrides, whether an overview of runs covers its folder."""

    choices: dict
    overrides: tuple
    overview: bool
    sweep: bool


GROUPS = ("data", "model", "activation", "init", "optimizer", "schedule", "loss", "experiment")  # config groups
NOT_HPARAMS = (
    "hydra.",
    "resume",
    "overwrite",
    "trainer.progress",
    "sweep.",
    "hparams_search",
)  # tool settings, not the experiment's


def hparams_of(config: dict) -> dict[str, Any]:
    """What the HParams tab shows for a run: its config group choices, then the settings given on its
    command line (for a sweep: the swept ones, the same keys for every run), with their values as the
    run used them. Not the whole config: its hundred constant keys would bury what was compared."""
    flat = flatten({k: v for k, v in config.items() if k not in ("choices", "overrides", "overview", "multirun")})
    choices = config.get("choices", {})
    out: dict[str, Any] = {g: str(choices[g]) for g in GROUPS if choices.get(g) not in (None, "None")}
    for item in config.get("overrides", []):
        key = item.split("=", 1)[0].lstrip("+~")
        if key in out or key.startswith(NOT_HPARAMS):
            continue
        value = flat.get(key, item.split("=", 1)[-1])
        out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    if not config.get("multirun", True):  # runs alone in one folder (outputs/runs) set different keys: the keys
        for key in ALWAYS:  # they are most often compared by, each run's value, never a blank cell in the tab
            out.setdefault(key, flat.get(key))
    return out or {"seed": flat.get("trainer.seed", 0)}


ALWAYS = ("optimizer.lr", "trainer.epochs", "trainer.batch_size", "trainer.seed")  # in every run's HPARAMS


@dataclass(eq=False)  # compared by identity: a field-by-field comparison of configs would cost the loop dearly
class Member:
    """A run set up and ready to train: its folder locked (until the loop is done with it), its files
    opened; `state`: the checkpoint it continues, if any. The loop fills in the rest."""

    cfg: DictConfig
    run_dir: Path
    exp: Experiment
    tracker: Tracker
    lock: run_folder.Lock
    state: dict | None = None
    training: Any = None  # train.Training, once the loop starts it
    done: bool = False
    failed: BaseException | None = None


def prepare(
    cfg: DictConfig,
    run_dir: str | Path,
    job: JobRecord | None = None,
    cpu_share: int | None = None,
    quiet: bool = False,
    shared: bool = False,
) -> Member | dict:
    """A run up to its first step: lock and check its folder, set it up (continuing cfg.resume's
    checkpoint), open its files. A resumed run that has finished: its summary, nothing changed.
    `quiet`, `shared`: a member of a stack (no banner; its image set shared with the others)."""
    run_dir = Path(run_dir)
    lock = run_folder.Lock(run_dir).__enter__()
    try:
        run_folder.check_start(run_dir, cfg.resume, cfg.overwrite)
        run_folder.remove_leftovers(run_dir)  # temporary files of saves that a kill interrupted
        done = checkpoint.finished(run_dir, cfg.trainer.epochs) if cfg.resume is not None else None
        if done is not None:
            from nnlab.views.console import console

            console.print(finished_message(run_dir, done), soft_wrap=True)
            lock.__exit__()
            return done
        exp = setup(cfg, cpu_share, shared)
        state, path = checkpoint.resume_state(cfg.resume, run_dir, exp.config)
        if state is not None:
            checkpoint.check_fits(exp, state, path)
        return Member(cfg, run_dir, exp, open_run(cfg, run_dir, exp, state, job, quiet=quiet), lock, state)
    except BaseException:
        lock.__exit__()
        raise


def guard(m: Member, alone: bool, work, *args):
    """A member's part of the work, `work(*args)`. Alone, what fails raises; in a stack it ends that
    member only (recorded in its folder), not the stack."""
    if alone:
        return work(*args)
    try:
        return work(*args)
    except Exception as e:  # noqa: BLE001  (any failure of one member: its folder says what, the others go on)
        from nnlab.errors import SaveError
        from nnlab.run_files.tracking import record_failure
        from nnlab.views.console import error

        m.done, m.failed = True, e
        try:
            record_failure(m.run_dir, e)
        except OSError:
            pass
        what = str(e) if isinstance(e, SaveError) else f"{type(e).__name__}: {e}"
        error(f"{m.run_dir}: {what} (this run stops; the others go on)", title="failure")
        return None


def close(m: Member, alone: bool, label: str, size: int, wall: float) -> dict | None:
    """Test, the closing figures (their drawing may go on in the painter: the tracker's close() waits for
    it); the summary (with how it was trained), for the caller to write once the curves are drawn. None
    for a member that failed."""
    summary = None
    if m.training is not None and m.failed is None:
        summary = guard(m, alone, m.training.finish)
    if summary is not None:
        if not alone:
            summary["batch"] = {"stack": label, "members": size, "wall_time_s": wall}
        guard(m, alone, lambda: final_figures(m.exp, m.run_dir, m.tracker, summary))
    return None if m.failed is not None else summary


def said(members: list[Member], summaries: list[dict | None], quiet: bool) -> None:
    """How the runs ended: a run's closing table; quiet (a sweep's runs), one line per setting (its runs
    less the seed): `  init=zeros  5 seeds: ok x5  acc/test 0.4796 ± 0.0098  alarms: flat_loss x5`, the
    band the 95% interval of the seeds' mean, as the report's; a run of its own, its numbers. The alarms'
    full text is in each run's train.log and TensorBoard's TEXT tab."""
    from nnlab.compare import setting_names
    from nnlab.views.console import console, summary_table

    if not quiet:
        summary_table(summaries[0])
        return
    given = [dict(o.split("=", 1) for o in m.exp.config.get("overrides", []) if "=" in o) for m in members]
    settings: dict[str, list[dict | None]] = {}
    names = setting_names(given) if len(members) > 1 else [members[0].run_dir.name]  # a run of its own: its folder
    for name, summary in zip(names, summaries):
        settings.setdefault(name, []).append(summary)
    if len(settings) > MANY_SETTINGS:  # a landscape's stack: one line for it (the map and the report say the rest)
        console.print(many_line(settings), soft_wrap=True, highlight=False)
        return
    for name, ended in settings.items():
        console.print(setting_line(name, ended), soft_wrap=True, highlight=False)


MANY_SETTINGS = 12  # a stack of more settings says one line for all of them


def many_line(settings: dict[str, list[dict | None]]) -> str:
    """`  64 runs of 64 settings: ok x52, diverged x12; best acc/test 0.9720 (optimizer.lr=0.144,...)`."""
    from nnlab.views.console import shown

    ended = [(name, s) for name, group in settings.items() for s in group]
    statuses = Counter("failed" if s is None else s["status"] for _, s in ended)
    line = f"  {len(ended)} runs of {len(settings)} settings: " + ", ".join(f"{k} x{n}" for k, n in statuses.items())
    scored = [
        (s["metrics"][key], name)
        for name, s in ended
        if s is not None and s["status"] == "ok"
        for key in ("acc/test", "r2/test")
        if isinstance(s["metrics"].get(key), (int, float))
    ]
    if scored:
        value, name = max(scored)
        key = "acc/test" if any("acc/test" in s["metrics"] for _, s in ended if s) else "r2/test"
        line += f"; best {key} {value:.4f} ({shown(name)})"
    return line


def setting_line(name: str, summaries: list[dict | None]) -> str:
    """One setting's runs as they ended (None: a run that failed): their statuses, the band of each test
    metric (one run: its value), the alarms they raised."""
    from nnlab.compare import band
    from nnlab.views.console import result_line, shown

    statuses = Counter("failed" if s is None else s["status"] for s in summaries)
    ran = [s for s in summaries if s is not None]
    alarms = Counter(a["name"] for s in ran for a in s.get("alarms", []))
    n = len(summaries)
    if n == 1:  # a run of its own: the line a remote run gets too (console.result_line), and its alarms
        line = result_line(name, next(iter(statuses)), ran[0]["metrics"] if ran else {})
        return line + (f"  alarms: {', '.join(alarms)}" if alarms else "")
    tested = [k for k in dict.fromkeys(k for s in ran for k in s["metrics"]) if k.endswith("/test")]
    parts = [", ".join(f"{status} x{k}" for status, k in statuses.items())]
    for key in tested:
        b = band([s["metrics"].get(key) for s in ran])
        if b is not None:
            parts.append(f"{key} {b.mean:.4f}" + (f" ± {b.half:.4f}" if b.n > 1 else ""))
    if alarms:
        parts.append("alarms: " + ", ".join(f"{a} x{k}" for a, k in alarms.items()))
    head = "  ".join(filter(None, [shown(name), f"{n} seeds"]))
    return f"  {head}: " + "  ".join(parts)


def finished_message(run_dir: Path, summary: dict) -> str:
    n = summary.get("epochs_run")
    return (
        f"{run_dir} has finished (status ok, {n} epochs{', stopped early' if summary.get('stopped_early') else ''}): "
        f"nothing to resume, nothing changed. To train it longer: resume={run_dir} trainer.epochs={(n or 0) + 10}."
    )


def open_run(
    cfg: DictConfig, run_dir: Path, exp: Experiment, state: dict | None, job: JobRecord | None, quiet: bool = False
) -> Tracker:
    """Write the run's config and environment, keep the rows a resume continues from, open its tracker;
    say what starts (the banner: on the terminal unless `quiet`, in train.log always).
    `job`: the jobs.task.Job it is (Hydra's record: its config group choices and its command-line overrides), if any."""
    from nnlab.config.text import config_yaml
    from nnlab.views.console import console

    text = config_yaml(cfg, resolve=True)
    run_folder.write_file(run_dir / "config.yaml", text)
    run_folder.write_file(run_dir / "environment.json", json.dumps(environment(str(exp.device)), indent=2) + "\n")
    lines = [*banner(run_dir, exp, state), *exp.notes]
    if not quiet:
        for line in lines:
            console.print(line, soft_wrap=True, highlight=False)
    if job is not None:
        exp.config["choices"] = dict(job.choices)
        exp.config["overrides"] = list(job.overrides)
        exp.config["overview"] = job.overview
        exp.config["multirun"] = job.sweep  # (not `sweep`: the config's own group of that name)
    rows, fresh = run_dir / "metrics.jsonl", state is None
    if rows.exists():  # keyed by step: what was logged after the checkpoint (and any test row) comes again
        run_folder.keep_rows(rows, lambda r: not fresh and _before(r, state))
    purge = 0 if fresh and has_events(run_dir) else (state["step"] + 1 if state is not None else None)
    tracker = Tracker(run_dir, purge_step=purge)
    tracker.log("\n".join(lines))
    if state is None:
        tracker.text("config", "```\n" + text + "\n```")
        tracker.layout(task_metrics.score(exp.data.kind), logged_groups(exp))
        m = model_summary(exp.model)
        tracker.text(
            "model", f"```\n{bare(exp.model)}\n```\n\n{m['parameters']:,} parameters ({m['trainable']:,} trainable)"
        )
        for note in exp.notes:
            tracker.text("notes", note)
    return tracker


def logged_groups(exp: Experiment) -> set[str]:
    """The groups of statistics a run logs beside its losses: the rate where trainer.log_every steps come at
    least once, gradient norms and update ratios where diagnostics.every steps do, batch norm's scale and
    shift where it has batch norm; for hidden activations (measured at the start too) the dead fraction of
    rectifiers or the saturated fraction of sigmoid and tanh, and the units passing no gradient back of any
    elementwise activation (not maxout)."""
    from nnlab.nn.activations import Maxout
    from nnlab.training.diagnostics import RECTIFIERS, SATURATING, batch_norms, hidden_activations

    every, steps = exp.diagnostics.every, exp.steps_per_epoch * exp.trainer.epochs
    logged = {"stats/grad_norm", "stats/update_ratio"} if 0 < every <= steps else set()
    logged |= {"step/lr"} if exp.trainer.log_every <= steps else set()  # the rate: every log_every steps
    logged |= {"stats/bn_scale", "stats/bn_shift"} if batch_norms(exp.model) else set()
    if hidden_activations(exp.model, exp.activation_type):
        logged |= {"stats/dead_frac"} if issubclass(exp.activation_type, RECTIFIERS) else set()
        logged |= {"stats/saturated_frac"} if exp.activation_type in SATURATING else set()
        logged |= set() if issubclass(exp.activation_type, Maxout) else {"stats/no_grad_frac"}
    return logged


def final_figures(exp: Experiment, run_dir: Path, tracker: Tracker, summary: dict) -> None:
    """The closing pictures of the model the test set measured (the best checkpoint), in the run folder
    and in TensorBoard: for 2-D points its decision boundary with axes (decision_boundary.png); for
    images the confusion matrix on the test set (confusion_matrix.png, and in summary.json) and the first
    25 misclassified test images with their true and predicted class (misclassified.png)."""
    data, m = exp.data, summary["metrics"]
    score = m.get("acc/test")
    if score is None:
        return
    step, epoch = summary["steps"], summary.get("best_epoch")
    if data.kind == "points" and data.in_shape[0] == 2:
        if not tracker.draws("decision_boundary_final"):
            return
        image = figures.decision_boundary(exp.model, exp.loss_fn.predict, data.train.x, data.train.y)
        lo, hi = figures.plane_extent(data.train.x)
        title = f"{run_dir.name}\nepoch {epoch}: acc/test {score:.3f}"
        tracker.figure(
            "decision_boundary_final",
            figures.boundary_figure,
            (image.permute(1, 2, 0).numpy(), (lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item()), title),
            step,
            "decision_boundary.png",
        )
    elif data.kind == "images":
        test, size = data.test, exp.trainer.eval_batch_size
        with torch.no_grad(), eval_mode(exp.model):
            pred = torch.cat([exp.loss_fn.predict(exp.model(test.x[i : i + size])) for i in range(0, len(test), size)])
        c = data.num_classes
        matrix = torch.bincount(test.y * c + pred, minlength=c * c).reshape(c, c).cpu()
        summary["confusion_matrix"] = matrix.tolist()
        tracker.figure(
            "confusion_matrix",
            figures.confusion_figure,
            (matrix.tolist(), f"test set, epoch {epoch}: acc/test {score:.3f}"),
            step,
            "confusion_matrix.png",
        )
        if not tracker.draws("misclassified"):
            return
        wrong = (pred != test.y).nonzero()[:25, 0]
        images = data.unproject(test.x[wrong]).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        names = [f"true {t}, predicted {p}" for t, p in zip(test.y[wrong].tolist(), pred[wrong].tolist())]
        tracker.figure(
            "misclassified",
            figures.examples_figure,
            (images, names, f"misclassified test images ({int((pred != test.y).sum())} of {len(test)})"),
            step,
            "misclassified.png",
        )


class _Files:
    """Where figures drawn after the run go: its folder only (TensorBoard's events are the run's record)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def draws(self, tag: str) -> bool:
        return True

    def figure(self, tag: str, draw, args: tuple, step: int, filename: str | None = None) -> None:
        if filename:
            painter.render(draw, args, str(self.run_dir / filename))


def draw_figures(run_dir: str | Path) -> list[str]:
    """A finished run's own figures, drawn now (a stack's runs skip some: sweep.run_figures): curves.png,
    then from its best checkpoint decision_boundary.png (2-D points) or confusion_matrix.png and
    misclassified.png (images), and activations_final.png. Returns the files written."""
    from nnlab.commands.load_run import load_experiment
    from nnlab.errors import ConfigError
    from nnlab.training.diagnostics import activations_figure, hidden_activations, probe_activations

    run_dir = Path(run_dir)
    summary = records.read_summary(run_dir)
    if summary is None:
        raise ConfigError(f"{run_dir} holds no readable summary.json: only a finished run's figures can be drawn.")
    _, _, _, exp = load_experiment(run_dir)  # its best checkpoint, on the CPU: a figure needs no GPU
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.png")}
    figures.run_curves(run_dir, exp.data.kind)
    final_figures(exp, run_dir, _Files(run_dir), summary)
    acts = hidden_activations(exp.model, exp.activation_type)
    if acts:
        probe = exp.data.train.x[: exp.diagnostics.probe_size]
        n = summary.get("epochs_run")
        when = f"after {n} epoch{'s' if n != 1 else ''} (the best checkpoint)"
        activations_figure(_Files(run_dir), probe_activations(exp.model, acts, probe), 0, when, "activations_final.png")
    return sorted(p.name for p in run_dir.glob("*.png") if before.get(p.name) != p.stat().st_mtime_ns)


def banner(run_dir: Path, exp: Experiment, state: dict | None) -> list[str]:
    """What starts: the run's folder, device and threads, the model's size, the data, how to watch it."""
    d, m = exp.data, model_summary(exp.model)
    what = "continues" if state is not None else "starts"
    sizes = " / ".join(
        f"{len(s):,} {name}" for name, s in (("train", d.train), ("val", d.val), ("test", d.test)) if s is not None
    )
    shape = "x".join(str(n) for n in d.in_shape)
    return [
        f"run {what}: {run_dir}" + (f" (from step {state['step']})" if state is not None else ""),
        f"  {exp.device.type} ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}), "
        f"{m['class']} with {m['parameters']:,} parameters, data {sizes} (inputs {shape})",
        f"  watch it: {tensorboard_command(run_dir)}",
    ]


def _before(row: dict, state: dict) -> bool:
    """Was this metrics row written before the checkpoint `state` was saved? Rows of later steps were not;
    nor test rows; nor, where the checkpoint was taken at an epoch's last step before that epoch ended
    (checkpoint_every), the epoch-end row of that same step: the resumed run ends that epoch again."""
    if row["step"] > state["step"] or any(k.endswith("/test") for k in row):
        return False
    mid_epoch = state["position"]["batch"] > 0
    return not (mid_epoch and row["step"] == state["step"] and "loss/train" in row)
