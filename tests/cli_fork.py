"""`nnlab ARGS` in a process of its own, forked from a server that has already imported the heavy third-party
libraries (torch, Hydra, OmegaConf, matplotlib, TensorBoard: about 2.3 s of every start on this machine),
through Python's own multiprocessing forkserver. The child is a fresh process as far as nnlab is concerned:
nnlab itself is imported there (after its working directory, environment and output files are set), its
`main(argv)` runs as `python -m nnlab` runs it, atexit handlers run, the exit code is the process's.
Nothing of nnlab is preloaded, so no module reads its environment early (rich's console width: COLUMNS).
NNLAB_TEST_SUBPROCESS=1 runs every command as a plain `python -m nnlab` subprocess instead (conftest.nnlab).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import tempfile
import traceback

PRELOAD = ["torch", "numpy", "matplotlib", "hydra", "omegaconf", "torch.utils.tensorboard", "rich", "yaml"]
_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload([*PRELOAD, __name__])
    return _CONTEXT


def _child(args: list[str], cwd: str, env: dict, out: str, err: str) -> None:
    """The forked process: `python -m nnlab ARGS` with its output to files, exiting with its code."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
    sys.argv = ["nnlab", *args]
    code = 0
    try:
        from nnlab.cli import main

        code = main(list(args)) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def run(args: list[str], cwd, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """What subprocess.run([python, -m, nnlab, *args], capture_output=True, text=True) returns."""
    with tempfile.TemporaryDirectory(prefix="nnlab-cli-") as folder:
        out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        process = _context().Process(target=_child, args=(list(args), str(cwd), dict(env), out, err))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["nnlab", *args], timeout)
        code = process.exitcode
        with open(out, encoding="utf-8", errors="replace") as f:
            stdout = f.read()
        with open(err, encoding="utf-8", errors="replace") as f:
            stderr = f.read()
    return subprocess.CompletedProcess(["nnlab", *args], code, stdout, stderr)
