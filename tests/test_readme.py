"""Every `nnlab ...` command the README and the docs/ pages show, run as printed, made short by overrides
appended after it (one epoch, a small subset, few seeds or trials: the last value of a key wins), with real
MNIST from ../shared/data. A placeholder folder (DATE_TIME) is made by a tiny run first. Where a page says
what a command answers (`# passes`, `# fails steps 2, 3 and 4`, `# 12 runs, one stack`), that is checked
too. A new command on a page is tested without a line of test code. The pages themselves are read as a
Markdown renderer reads them (markdown-it, rich's own parser): every table renders whole, every link and
anchor resolves."""

from __future__ import annotations

import functools
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


PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_commands() -> list[tuple[str, str]]:
    """(page:line, command) of every indented `nnlab ...` line of the README and docs/ (continuations joined)."""
    found = []
    for page in PAGES:
        lines, i = page.read_text().splitlines(), 0
        while i < len(lines):
            m = re.match(r"^\s{4,}(?:NNLAB_DATA_DIR=\S+ )?(nnlab \S.*)$", lines[i])
            if m:
                text, start = m.group(1), i + 1
                while text.rstrip().endswith("\\"):
                    i += 1
                    text = text.rstrip()[:-1] + " " + lines[i].strip()
                found.append((f"{page.stem}:{start}", text))
            i += 1
    return found


def _words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 30 and any("-m" in _words(c) for _, c in COMMANDS)


@pytest.mark.slow
@pytest.mark.parametrize("line,command", COMMANDS, ids=[n for n, _ in COMMANDS])
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
    claimed = failed_steps(comment)
    if claimed is not None:  # exactly the steps it says: `fails steps 2, 3 and 4`
        failed = {int(n) for n in re.findall(r"^\W*(\d+)\W.*\bFAIL\b", out.stdout, re.M)}
        assert failed == claimed, (command, sorted(failed), out.stdout[-2000:])
    runs, stacks = claimed_stacks(comment)
    if runs is not None or stacks is not None:  # `# 12 runs, one stack`: the sweep's first line says so
        said = re.search(r"sweep \S+: (\d+) jobs? in (\d+) groups?", out.stdout)
        assert said, out.stdout[-2000:]
        assert runs in (None, int(said.group(1))) and stacks in (None, int(said.group(2))), (comment, said.group(0))


def failed_steps(comment: str) -> set[int] | None:
    """The steps a comment says a check fails (`fails step 3`, `fails steps 2, 3 and 4`); None: no claim."""
    m = re.search(r"fails steps? ([\d, and]+)", comment)
    return {int(n) for n in re.findall(r"\d+", m.group(1))} if m else None


def test_the_claims_of_failed_steps_are_read_whole():
    assert failed_steps("# fails steps 2, 3 and 4") == {2, 3, 4} and failed_steps("# fails step 3: too small") == {3}
    assert failed_steps("# passes") is None


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


@functools.cache
def _tokens(page):
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").parse(page.read_text())


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_page_renders_its_tables_whole_and_reads_in_lines(page):
    """A row a blank line cut from its table renders as a paragraph of pipes; here every `|` line is in a
    table whose rows have the header's number of cells, and prose lines stay readable."""
    tokens = _tokens(page)
    in_tables = set()
    for t in tokens:
        if t.type == "table_open":
            in_tables.update(range(*t.map))
    lines = page.read_text().splitlines()
    for n, line in enumerate(lines):
        if line.startswith("|"):
            assert n in in_tables, f"{page.name}:{n + 1} is a table row outside any table: {line[:80]}"
    for i, t in enumerate(tokens):
        if t.type == "table_open":
            rows, cells = [], 0
            for u in tokens[i + 1 :]:
                if u.type == "table_close":
                    break
                if u.type == "tr_close":
                    rows.append(cells)
                    cells = 0
                cells += u.type in ("th_open", "td_open")
            assert len(set(rows)) == 1, f"{page.name}:{t.map[0] + 1}: rows of {sorted(set(rows))} cells"
    code = {n for t in tokens if t.type in ("code_block", "fence") for n in range(*t.map)}
    long = [n + 1 for n, line in enumerate(lines) if len(line) > 200 and n not in code and not line.startswith("|")]
    assert not long, f"{page.name}: lines over 200 characters: {long}"
    assert max((len(line) for line in lines if line.startswith("|")), default=0) <= 600


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_and_anchor_resolves(page):
    anchors = {
        p: {_slug(t.content) for u, t in zip(_tokens(p), _tokens(p)[1:]) if u.type == "heading_open"} for p in PAGES
    }
    for t in _tokens(page):
        for child in t.children or []:
            if child.type != "link_open":
                continue
            href = child.attrs["href"]
            if re.match(r"^(https?|mailto):", href):
                continue
            path, _, anchor = href.partition("#")
            target = (page.parent / path).resolve() if path else page
            assert target.exists(), f"{page.name}: a link to {href}: no such file"
            if anchor and target.suffix == ".md":
                assert anchor in anchors.get(target, set()), f"{page.name}: a link to {href}: no such heading"


def test_the_readme_fits_a_reader():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    first = next(i for i, line in enumerate(lines) if line.startswith("## The lecture experiments"))
    assert first < 120  # the experiments near the top
