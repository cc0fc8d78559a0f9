"""Fuzzing the two ways in (hypothesis): override lines drawn from the schema with edge values, and run
folders with random corruptions of every file nnlab reads. The invariants hold for any input: the
command ends with exit 0, 1 or 2, no traceback reaches the terminal, nothing outside the output folder is
written, nothing of the user's is removed, and no code from the input runs (a marker file never appears).
NNLAB_FUZZ_EXAMPLES raises the number of cases (a nightly run: NNLAB_FUZZ_EXAMPLES=500)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY, nnlab, train

EXAMPLES = int(os.environ.get("NNLAB_FUZZ_EXAMPLES", "0"))
MARKER = "PWNED"


def _keys() -> list[str]:
    from omegaconf import OmegaConf

    from nnlab.cli.command_line import compose, group_options

    flat = []

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                flat.append(f"{prefix}{k}")

    walk(OmegaConf.to_container(compose([])), "")
    return (
        sorted(flat)
        + sorted(group_options())
        + ["hydra.launcher.max_members", "hydra.sweeper.n_trials", "hydra.sweep.subdir"]
    )


KEYS = _keys()
EDGES = [
    "0",
    "-1",
    "1",
    "0.5",
    "1e9",
    "-1e-30",
    "nan",
    "inf",
    "-inf",
    "2**64",
    "18446744073709551617",
    "true",
    "null",
    "[]",
    "[0]",
    "[1,-2]",
    "{a:1}",
    "''",
    "'ü∂漢'",
    "'\x1b]0;title\x07'",
    "'[bold]x[/bold]'",
    "'[link=file:///etc]x'",
    "../../../../tmp/x",
    "/etc/passwd",
    "'a b'",
    "${oc.env:HOME}",
    "${now:%Y}",
    "'$(touch PWNED)'",
    "relu",
    "zeros",
    "'x' * 5000",
]


@st.composite
def override_lines(draw) -> list[str]:
    n = draw(st.integers(1, 3))
    lines = []
    for _ in range(n):
        key, value = draw(st.sampled_from(KEYS)), draw(st.sampled_from(EDGES))
        prefix = draw(st.sampled_from(["", "", "", "+", "~", "++"]))
        lines.append(f"{prefix}{key}" if prefix == "~" else f"{prefix}{key}={value}")
    return lines


@settings(max_examples=EXAMPLES or 40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(override_lines())
def test_any_override_line_is_checked_or_refused_in_one_paragraph(lines):
    """In process: the pre-flight's check passes, or refuses with a ConfigError of one line; never another
    exception."""
    from nnlab.cli.command_line import check_command_line
    from nnlab.errors import ConfigError

    try:
        check_command_line(lines)
    except ConfigError as e:
        assert "\n" not in str(e).strip(), str(e)


def _world(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A working directory holding a user's files, a folder outside it, and what both hold now."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    (work / "src").mkdir(parents=True)
    (work / "mythesis.txt").write_text("mine")
    outside.mkdir()
    (outside / "notes.txt").write_text("mine")
    return work, outside, _snapshot(tmp_path, work)


def _snapshot(root: Path, work: Path) -> dict:
    """Every file under root but the command's output folder (work/outputs), with its bytes."""
    return {
        p: p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_relative_to(work / "outputs") and ".lock" not in p.name
    }


def _holds(out, tmp_path: Path, work: Path, before: dict) -> None:
    assert out.returncode in (0, 1, 2), (out.returncode, out.stderr[-2000:])
    assert "Traceback (most recent call last)" not in out.stderr + out.stdout, out.stderr[-3000:]
    after = _snapshot(tmp_path, work)
    assert {p: b for p, b in after.items() if p in before} == before  # nothing of anyone's changed or removed
    assert not [p for p in after if p not in before and not p.is_relative_to(work / "outputs")], [
        p for p in after if p not in before
    ]
    assert not list(tmp_path.rglob(MARKER)) and not list(Path.cwd().glob(MARKER))


@pytest.mark.slow
@settings(max_examples=EXAMPLES or 5, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(override_lines(), st.booleans())
def test_any_command_line_keeps_the_invariants(tmp_path_factory, lines, sweep):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    work, outside, before = _world(tmp_path)
    mode = ["-m", "trainer.seed=0,1"] if sweep else []
    out = nnlab("train", *mode, *lines, *TINY, "trainer.epochs=1", cwd=work, timeout=300)
    _holds(out, tmp_path, work, before)


CORRUPTIONS = {
    "truncated": lambda p, o: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p, o: p.write_bytes(b""),
    "bytes": lambda p, o: p.write_bytes(os.urandom(64)),
    "list": lambda p, o: p.write_text("[1, 2]\n"),
    "deep": lambda p, o: p.write_text("[" * 100000 + "]" * 100000 + "\n"),
    "wrong types": lambda p, o: p.write_text(
        '{"status": 3, "metrics": [1], "alarms": "x", "trainer": "x", "epochs_run": "many"}\n'
    ),
    "yaml code": lambda p, o: p.write_text(f"!!python/object/apply:os.system ['touch {o / MARKER}']\n"),
    "markup": lambda p, o: p.write_text(
        '{"status": "\\u001b]0;x\\u0007[bold]ok", "alarms": [{"name": "[link=x]\\u001b[31m"}]}\n'
    ),
    "link out": lambda p, o: (p.unlink(), p.symlink_to(o / "notes.txt")),
    "hard link": lambda p, o: os.link(p, o / f"hard-{p.name}"),
}
FILES = [
    "config.yaml",
    "summary.json",
    "metrics.jsonl",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    ".hydra/overrides.yaml",
    ".hydra/config.yaml",
    "environment.json",
    "train.log",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_finished")
    run, _ = train(root, *TINY, run_dir="a=b")
    return run


@pytest.mark.slow
@settings(max_examples=EXAMPLES or 4, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(FILES), st.sampled_from(sorted(CORRUPTIONS)))
def test_any_corrupt_run_folder_keeps_the_invariants(tmp_path_factory, finished, name, corruption):
    """report, resume, doctor and ensemble on a run folder with one file corrupted; load_run in process
    raises nothing but ConfigError."""
    import nnlab as lib
    from nnlab.errors import ConfigError

    tmp_path = tmp_path_factory.mktemp("corrupt")
    work, outside, _ = _world(tmp_path)
    run = work / "outputs" / "a=b"
    shutil.copytree(finished, run)
    CORRUPTIONS[corruption](run / name, outside)
    before = _snapshot(tmp_path, work)
    for args in (
        ["report", str(run.parent)],
        ["train", f"resume={run}", "trainer.epochs=3"],
        ["doctor", str(run)],
        ["ensemble", str(run.parent)],
    ):
        out = nnlab(*args, cwd=work, timeout=300)
        _holds(out, tmp_path, work, before)
    try:
        lib.load_run(run)
    except ConfigError:
        pass
    assert not list(tmp_path.rglob(MARKER))
