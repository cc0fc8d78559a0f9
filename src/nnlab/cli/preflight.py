"""The pre-flight: what `nnlab train` (and check, lr-find, batch-size-find) does with its command line before
Hydra writes anything. Every job's config is checked (command_line.check_command_line), the output folder
is claimed for this process (run_folder.claim_output: locked, refused where it would mix or lose runs), and
a resume is checked against the run it continues (resume=RUN, resume=auto: that run's own settings,
rebuilt from its saved config; saved_config.run_overrides). What it claims goes into the command's
jobs.Session.
"""

from __future__ import annotations

from pathlib import Path

from nnlab.jobs.task import Session

MODES = {"-m": ("-m", "--multirun"), "--cfg": ("-c", "--cfg"), "--info": ("--info",)}  # Hydra runs one of them
INFO = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")  # what `--info` may name


def options_first(args: list[str]) -> list[str]:
    """Hydra's options (-m, --cfg job, ...) before the overrides: argparse takes the overrides as one
    positional list, so an option between them (`nnlab train data=mnist --cfg job`, or the settings the
    pre-flight adds after it) would leave the rest unrecognized."""
    from nnlab.cli.command_line import FLAGS_WITH_VALUE

    options, overrides, last, i = [], [], [], 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            after = args[i + 1] if i + 1 < len(args) else ""
            takes = after in INFO if a == "--info" else a in FLAGS_WITH_VALUE
            (last if a == "--info" and not takes else options).extend(args[i : i + 2] if takes else [a])
            i += 2 if takes else 1
        else:
            overrides.append(a)
            i += 1
    return [*options, *overrides, *last]  # a bare --info last: it would take the next word as its value


def preflight(args: list[str], session: Session) -> tuple[list[str], bool]:
    """Check the command line before Hydra writes anything: every job's config, the output folder (not
    in use by another process), and a resume (the run it names, its checkpoint against this config).
    resume=RUN continues RUN in its own folder with its own saved overrides (the ones given here win).
    Returns the arguments to run, and True where there is nothing to do (a finished run)."""
    from nnlab.cli.command_line import check_command_line, grid_sweeper, quiet_optuna, quoted_path
    from nnlab.config.overrides import override_key
    from nnlab.errors import ConfigError
    from nnlab.run_files import checkpoint
    from nnlab.run_files.folder import claim_output

    resume = next((a.split("=", 1)[1] for a in args if a.startswith("resume=")), None)
    run = (
        checkpoint.run_of(resume)
        if resume not in (None, "auto", "null")
        else _run_to_continue(args)
        if resume == "auto"
        else None
    )
    if run is not None:
        # its own settings, from its saved config (saved_config: the run folder is data), then the given ones
        from nnlab.run_files.saved_config import run_overrides

        given = {override_key(a) for a in args if "=" in a}
        saved = [o for o in run_overrides(run) if override_key(o) not in given]
        args = [*saved, *args, *([] if "hydra.run.dir" in given else [f"hydra.run.dir={run}"])]
    args = grid_sweeper([quoted_path(a) for a in args], None)
    cfg, folder, sweeper, name_without = check_command_line(args)  # every job's config checked; the output folder
    multirun = any(a in ("-m", "--multirun") for a in args)
    if name_without and not any(a.startswith("hydra.job.config.override_dirname.exclude_keys=") for a in args):
        # a sweep's folders (and TensorBoard's run names) say what differs, not what every run shares
        args = [*args, f"hydra.job.config.override_dirname.exclude_keys=[{','.join(name_without)}]"]
    args = grid_sweeper(args, sweeper if multirun else "")
    quiet_optuna(sweeper if multirun else None)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = next((a.split("=", 1)[1] for a in reversed(args) if a.startswith(key + "=")), None)
    fresh = given is None or "${now" in given  # a default, time-stamped name
    if cfg is not None and folder is not None and not any(a in ("-c", "--cfg") for a in args):
        # the folder is this process's before Hydra writes a byte into it (${now} resolved once)
        continuing = resume not in (None, "null")
        from nnlab.views.console import defer_interrupts

        defer_interrupts(True)  # a signal while the folder is made waits until the session knows it (to remove it)
        try:
            claimed, session.made, session.lock = claim_output(folder, key, fresh, cfg.overwrite, multirun, continuing)
        finally:
            defer_interrupts(False)  # (a noted signal interrupts here: _hydra removes what was made)
        folder = str(claimed)
        alone = not multirun and (fresh or (Path(folder).parent / "overview").is_dir())  # in outputs/runs, or continued
        session.runs = Path(folder).parent if alone else None
    if folder is not None:
        args = [*(a for a in args if not a.startswith(key + "=")), quoted_path(f"{key}={folder}")]
    session.sweep = Path(folder) if multirun and folder is not None else None
    if cfg is None or folder is None or any(a in ("-m", "--multirun", "-c", "--cfg") for a in args):
        return args, False
    folder = Path(folder)
    if resume in (None, "null"):
        return args, False
    session.kept = {p: p.read_bytes() for p in (folder / ".hydra").glob("*.yaml")}  # Hydra rewrites them first
    path = folder / "checkpoints" / "last.pt" if resume == "auto" else Path(resume)
    path = path / "checkpoints" / "last.pt" if path.is_dir() else path
    if path.exists():
        from omegaconf import OmegaConf

        checkpoint.compatible(checkpoint.load(path), path, OmegaConf.to_container(cfg, resolve=True))
    elif resume != "auto":
        raise ConfigError(
            f"resume={resume}: {path} does not exist; resume=auto starts afresh where there is no checkpoint."
        )
    done = checkpoint.finished(folder, cfg.trainer.epochs)
    if done is not None:
        from nnlab.training.member import finished_message
        from nnlab.views.console import console

        console.print(finished_message(folder, done), soft_wrap=True)
        return args, True
    return args, False


def _run_to_continue(args: list[str]):
    """The run that `resume=auto` continues where it is a run alone: its hydra.run.dir, once that holds a
    run with a checkpoint (else None: a fresh start, or a sweep's jobs, which continue their own)."""
    if any(a in MODES["-m"] for a in args):
        return None
    given = next((a.split("=", 1)[1].strip("'\"") for a in reversed(args) if a.startswith("hydra.run.dir=")), None)
    run = Path(given) if given else None
    return (
        run
        if run is not None and (run / "config.yaml").is_file() and (run / "checkpoints" / "last.pt").is_file()
        else None
    )
