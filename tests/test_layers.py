"""The house's layers, as the folders show them (README: Layout): a module imports from its own layer and
the layers below it. The few imports that go up are listed here, each with why; a new one fails this test
until it is moved down or listed. Read statically (every import, those inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

# from the top down; errors.py, metrics.py and compare.py (pure: names, arithmetic, statistics) are below all
LAYERS = ["cli", "jobs", "commands", "training", "views", "run_files", "engine", "data", "config", "nn", "conf"]
FOUNDATION = {"errors", "metrics", "compare"}
ENTRY = {"__init__", "__main__"}  # nnlab/__init__.py (load_run on first use) and python -m nnlab: above all
KNOWN_UPWARD = {  # (module, what it imports): why
    ("nnlab/run_files/saved_config.py", "nnlab.cli.command_line"): "compose() and group_options(): the tree's options",
    ("nnlab/commands/doctor.py", "nnlab.cli.command_line"): "the doctor checks the `nnlab train` sweeps it runs",
    ("nnlab/jobs/stacking.py", "nnlab.commands.report"): "round_floats: a job folder's name as the report shows it",
    ("nnlab/config/validate.py", "nnlab.run_files.checkpoint"): "transfer.init_from must name a checkpoint",
    ("nnlab/config/validate.py", "nnlab.data"): "describe(): which kind of data a source is",
    ("nnlab/run_files/tracking.py", "nnlab.views.painter"): "TensorBoard's images are figures, rendered",
    ("nnlab/data/images.py", "nnlab.run_files.folder"): "write_file: a download lands atomically",
    ("nnlab/views/figures.py", "nnlab.training.diagnostics"): "the activations figure of a run's probe",
    ("nnlab/training/member.py", "nnlab.commands.load_run"): "a finished run's figures drawn from its checkpoint",
}


def _layer(path: Path) -> str:
    parts = path.relative_to(REPO / "src").parts
    return parts[1] if len(parts) > 2 else path.stem


def test_imports_go_down_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = set()
    for path in sorted((REPO / "src" / "nnlab").rglob("*.py")):
        me = _layer(path)
        if me in ENTRY:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nnlab.")):
                continue
            other = node.module.split(".")[1]
            if me in FOUNDATION and other not in FOUNDATION:
                upward.add((str(path.relative_to(REPO / "src")), node.module))
            elif me in rank and other in rank and rank[other] < rank[me]:
                upward.add((str(path.relative_to(REPO / "src")), node.module))
    known = {k for k, why in KNOWN_UPWARD.items() if why}
    assert upward <= known, sorted(upward - known)


def test_the_plugins_never_import_the_command_line():
    """Hydra's plugins reach nnlab through jobs/ (what a job is), never through cli/."""
    for path in (REPO / "src" / "hydra_plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("nnlab.cli"), (path.name, node.module)


LIGHT_ENTRY = {"nnlab/cli/__init__.py", "nnlab/cli/completion.py"}  # `nnlab --help` and completion stay instant
HEAVY_STDLIB = {"multiprocessing", "concurrent"}  # worker pools: figures drawn, a sweep's groups trained in parallel


def test_imports_inside_functions_are_deferred_on_purpose():
    """An import inside a function is one of nnlab's own modules or a third-party library, deferred so that a
    command pays only for what it uses (torch, matplotlib, Hydra, TensorBoard; submitit, Ray, optuna when
    asked for); the standard library is imported at the top of a module, except in the light entry modules."""
    import sys

    misplaced = []
    for path in sorted((REPO / "src").rglob("*.py")):
        name = str(path.relative_to(REPO / "src"))
        if name in LIGHT_ENTRY:
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
                    module = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names and top not in HEAVY_STDLIB:
                        misplaced.append(f"{name}:{node.lineno} {module}")
    assert not misplaced, misplaced
