"""The configs ship inside the package: a non-editable install trains from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from conftest import REPO, TINY


def test_wheel_ships_the_configs_and_trains_from_anywhere(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("nnlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnlab/conf/train.yaml" in names and "nnlab/conf/activation/maxout.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a plain (non-editable) install of the pure-Python wheel
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import nnlab, sys; from nnlab.cli import main; print(nnlab.__file__); sys.exit(main())",
            "train",
            *TINY,
            "trainer.epochs=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(site)) and (tmp_path / "run" / "summary.json").exists()
