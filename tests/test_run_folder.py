"""run_folder.py: one process per run folder (a lock a kill cannot leave stale), rows that survive a torn
append, no leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from nnlab.errors import FolderInUse
from nnlab.run_files import folder as run_folder
from nnlab.run_files import records


def test_a_second_holder_is_refused_and_a_killed_holder_leaves_nothing_held(tmp_path):
    with run_folder.Lock(tmp_path):
        assert run_folder.holder(tmp_path) == str(os.getpid())
        with pytest.raises(FolderInUse, match=f"in use by another nnlab process \\(pid {os.getpid()}\\)"):
            run_folder.Lock(tmp_path).__enter__()
    assert run_folder.holder(tmp_path) is None
    code = f"from nnlab.run_files import folder; import time; folder.Lock({str(tmp_path)!r}).__enter__(); print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert run_folder.holder(tmp_path) == str(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_folder.holder(tmp_path) is None  # the kernel dropped the kill -9'd process's lock
    with run_folder.Lock(tmp_path):
        pass


def test_the_last_holder_removes_the_lock_file_and_a_removed_file_is_never_taken_for_the_folders(tmp_path):
    with run_folder.Lock(tmp_path):
        assert (tmp_path / ".lock").is_file()
        stale = os.open(tmp_path / ".lock", os.O_RDWR)  # a process that opened the file before its holder let go
    assert not (tmp_path / ".lock").exists()  # a finished run keeps no .lock
    assert not run_folder._same_file(stale, tmp_path / ".lock")  # locking it would hold nothing: it is gone
    with run_folder.Lock(tmp_path):  # the folder's lock is a new file, taken normally
        assert run_folder._same_file(os.open(tmp_path / ".lock", os.O_RDONLY), tmp_path / ".lock")
        with pytest.raises(FolderInUse):
            run_folder.Lock(tmp_path).__enter__()
    os.close(stale)


def test_a_torn_last_line_is_left_out_and_rows_are_rewritten_whole(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": i, "step/loss": 0.5} for i in range(1, 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "loss/tr')
    assert records.read_rows(path) == rows
    path.write_text(path.read_text() + "\n[1, 2]\nnot json\n")  # not rows at all
    assert records.read_rows(path) == rows
    run_folder.keep_rows(path, lambda r: r["step"] <= 2)
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in rows[:2])
    assert records.read_rows(tmp_path / "none.jsonl") == []


def test_leftovers_of_interrupted_saves_are_removed_and_made_folders_only_when_empty(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.pt.tmp-123").write_bytes(b"half")
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"whole")
    (tmp_path / "summary.json.tmp").write_text("{")
    assert len(run_folder.remove_leftovers(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoints", "last.pt"]
    made = run_folder.first_missing(tmp_path / "a" / "b" / "c")
    assert made == tmp_path / "a" and run_folder.first_missing(tmp_path) is None
    (tmp_path / "a" / "b" / "c" / ".hydra").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / ".hydra" / "config.yaml").write_text("x: 1")
    (tmp_path / "a" / "b" / "c" / "train.log").write_text("")
    (tmp_path / "a" / "b" / "data.bin").write_bytes(b"something of the user's")
    run_folder.remove_made(made)
    assert (tmp_path / "a" / "b" / "data.bin").exists()  # a real file: kept
    (tmp_path / "a" / "b" / "data.bin").unlink()
    run_folder.remove_made(made)
    assert not made.exists()


def test_a_lock_that_waits_takes_the_folder_when_its_holder_lets_go(tmp_path):
    """Lock(wait=S) tries again for S seconds (the runs' shared overview: two runs ending at once), then is refused."""
    import threading
    import time

    held = run_folder.Lock(tmp_path).__enter__()
    with pytest.raises(FolderInUse):
        run_folder.Lock(tmp_path, wait=0.2).__enter__()  # still held after 0.2 s: refused
    threading.Timer(0.3, held.__exit__).start()
    started = time.monotonic()
    with run_folder.Lock(tmp_path, wait=10.0):  # taken once the holder lets go, not refused at once
        assert 0.25 < time.monotonic() - started < 5
    assert not (tmp_path / run_folder.LOCK).exists()


def test_a_runs_default_name_is_what_it_sets_whole_and_safe_for_the_shell():
    from nnlab.run_files.folder import named_after

    name = named_after(
        ["activation=tanh", "model.hidden=[256,128]", "data.source.root=/data/mnist", "trainer.progress=false"]
    )
    assert name == "activation=tanh,model.hidden=256-128"  # no data folder, no glob brackets
    long = named_after([f"k{i}=" + "x" * 20 for i in range(10)])
    assert long.endswith(",+6") and len(long) <= 120 and all(p.endswith("x" * 20) for p in long.split(",")[:-1])
