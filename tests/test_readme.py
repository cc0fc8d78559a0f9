"""Every `nnlab ...` command the README shows, run as printed, made short by overrides appended after it
(one epoch, a small subset, few seeds or trials: the last value of a key wins), with real MNIST from
../shared/data. A placeholder folder (DATE_TIME) is made by a tiny run first. Where the README says what
a command answers (`# passes`, `# fails step 3`, `# 12 runs, one stack`), that is checked too. A new command in the README is
tested without a line of test code."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import REPO, SHARED_DATA, TINY, nnlab

SHORT = {  # what each command takes to run in seconds, appended after its own arguments
    "train": ["trainer.epochs=1", "data.subset=200", "trainer.progress=false"],
    "check": ["data.subset=200", "check.overfit_steps=100", "trainer.progress=false"],
    "lr-find": ["data.subset=512", "lr_find.steps=20", "trainer.progress=false"],
    "batch-size-find": ["data.subset=512", "batch_size_find.max_batch=128"],
    "doctor": [
        "trainer.epochs=2",
        "data.subset=200",
        "doctor.seeds=2",
        "doctor.candidates=1",
        "trainer.progress=false",
    ],
}
SWEEP = [
    "hydra.sweeper.n_trials=2",
    "hydra.sweeper.n_jobs=2",
    "hydra.launcher.executor=submitit_local",
]  # SLURM and 10k trials: locally, two


def readme_commands() -> list[tuple[int, str]]:
    """(line number, command) of every indented `nnlab ...` line of the README (continuations joined)."""
    lines = (REPO / "README.md").read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s{4,}(?:NNLAB_DATA_DIR=\S+ )?(nnlab \S.*)$", line)
        if m:
            text, start = m.group(1), i + 1
            while text.rstrip().endswith("\\"):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            found.append((start, text))
        i += 1
    return found


def _words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 30 and any("-m" in _words(c) for _, c in COMMANDS)


@pytest.mark.slow
@pytest.mark.parametrize("line,command", COMMANDS, ids=[f"L{n}" for n, _ in COMMANDS])
def test_every_readme_command_runs(tmp_path, monkeypatch, line, command):
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip("real MNIST is not in ../shared/data/MNIST/raw")
    env = {"NNLAB_DATA_DIR": str(SHARED_DATA)}
    words = _words(command)[1:]
    sub = words[0]
    for i, w in enumerate(words):  # a placeholder: a tiny run (or sweep) there first
        placeholder = re.search(r"outputs/(runs|sweeps)/(DATE_TIME\S*|\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)", w)
        if placeholder:
            folder = f"outputs/{placeholder.group(1)}/made"
            sweep = placeholder.group(1) == "sweeps"
            made = nnlab(
                "train",
                *(["-m", "trainer.seed=0,1"] if sweep else []),
                *TINY,
                f"hydra.{'sweep' if sweep else 'run'}.dir={folder}",
                cwd=tmp_path,
            )
            assert made.returncode == 0, made.stderr
            words[i] = w.replace(placeholder.group(0), folder)
    if "resume=auto" in words:  # the run it continues, made by the line before it in the README
        assert (
            nnlab(
                *words[:1], *[w for w in words[1:] if w != "resume=auto"], *SHORT["train"], cwd=tmp_path, env=env
            ).returncode
            == 0
        )
    if "experiment=transfer" in words:  # the pretrained run it starts from: the README's line before it
        before = next(c for _, c in COMMANDS if "outputs/pretrained/" in c and "hydra.run.dir" in c)
        assert nnlab(*_words(before)[1:], *SHORT["train"], cwd=tmp_path, env=env).returncode == 0
    if sub == "train" and "-m" in words and any(w.startswith("experiment=") for w in words):
        from nnlab.cli.command_line import (
            check_command_line,  # each experiment runs in test_experiments.py: here, its line
        )

        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("NNLAB_DATA_DIR", str(SHARED_DATA))
        check_command_line([*words[1:], *SHORT["train"]])
        return
    extra = SHORT.get(sub, [])
    if any(w.startswith("resume=") and w != "resume=auto" for w in words):  # the run's own config continues
        extra = ["trainer.progress=false"]
    if any(w.startswith("hparams_search=") for w in words):
        extra = [*extra, *SWEEP]
    out = nnlab(*words, *extra, cwd=tmp_path, env=env, timeout=900)
    assert "Traceback (most recent call last)" not in out.stderr, out.stderr[-3000:]
    comment = command.partition("#")[2]
    expected = (1,) if "fails" in comment else (0,)
    assert out.returncode in expected, f"L{line}: {command}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    step = re.search(r"fails steps? (\d)", comment)
    if step:
        assert re.search(rf"\b{step.group(1)}\b.*(FAIL|fail)", out.stdout, re.I), out.stdout[-2000:]
    runs, stacks = claimed_stacks(comment)
    if runs is not None or stacks is not None:  # `# 12 runs, one stack`: the sweep's first line says so
        said = re.search(r"sweep \S+: (\d+) jobs? in (\d+) groups?", out.stdout)
        assert said, out.stdout[-2000:]
        assert runs in (None, int(said.group(1))) and stacks in (None, int(said.group(2))), (comment, said.group(0))


NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4}


def claimed_stacks(comment: str) -> tuple[int | None, int | None]:
    """What a README comment claims of a sweep: its number of runs and of stacks (`16 seeds, one stack`)."""
    runs = re.search(r"\b(\d+|one|two|three|four) (?:runs|seeds)\b", comment)
    stacks = re.search(r"\b(\d+|one|two|three|four) stacks?\b", comment)
    value = [None if m is None else int(NUMBERS.get(m.group(1), m.group(1))) for m in (runs, stacks)]
    return value[0], value[1]


def test_the_readme_claims_of_sweeps_are_read():
    assert claimed_stacks("# 16 seeds, one stack") == (16, 1)
    assert claimed_stacks("# two stacks (the activation splits them)") == (None, 2)
    assert claimed_stacks("# passes") == (None, None)
    assert sum(any(claimed_stacks(c.partition("#")[2])) for _, c in COMMANDS) >= 4
