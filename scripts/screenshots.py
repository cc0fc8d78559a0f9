"""What TensorBoard shows of a small seed sweep, seen as a user sees it: a real TensorBoard server and a
headless Chromium (driven by Playwright). Saves a screenshot of TIME SERIES, CUSTOM SCALARS and HPARAMS and
returns what each shows (the tag groups in their order, the CUSTOM SCALARS categories, the HPARAMS table's
columns), which tests/test_browser.py asserts on; the README's pictures in docs/ are made by it:

    python scripts/screenshots.py                     # a fresh sweep (toy data, a minute), pictures into outputs/screenshots/
    python scripts/screenshots.py --out docs          # the same, replacing the docs' pictures (on purpose)
    python scripts/screenshots.py --logdir outputs/sweeps/DATE --out /tmp/shots

Needs `playwright` (nnlab's dev extra) and a Chromium: $CHROMIUM, `chromium` on the PATH (Debian's package
`chromium`), or Playwright's own (`playwright install chromium`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = [
    "data.source.n_train=400",
    "trainer.epochs=5",
    "trainer.progress=false",
    "init=he_normal,zeros",
    "trainer.seed=0,1,2",
]
TABS = {"timeseries": "time_series.png", "custom_scalars": "custom_scalars.png", "hparams": "hparams_tab.png"}
# as root on a machine with no network: no sandbox, no background connections to refuse
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def serve(logdir: Path):
    """A real TensorBoard server on `logdir` (a free port on 127.0.0.1), up and answering; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tb = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/data/runs", timeout=10)
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        tb.terminate()
        tb.wait(timeout=30)


def chromium() -> str | None:
    """A Chromium to drive: $CHROMIUM, one on the PATH, or None (then Playwright's own, where installed)."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def can_look() -> bool:
    """Playwright importable and a Chromium to start (the browser test skips otherwise)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return False
    if chromium() is not None:
        return True
    if os.environ.get("CHROMIUM"):
        return False
    with sync_playwright() as p:
        return Path(p.chromium.executable_path).is_file()


def _settled(page, selector: str, least: int, seconds: float = 60) -> list[str]:
    """The texts of `selector` (Playwright's CSS: through shadow roots) once at least `least` show and they
    have not changed for a second and a half: the dashboards load lazily, group by group."""
    deadline, last, since = time.time() + seconds, None, time.time()
    while time.time() < deadline:
        texts = [t.strip() for t in page.locator(selector).all_inner_texts()]
        if texts != last:
            last, since = texts, time.time()
        elif sum(map(bool, texts)) >= least and time.time() - since > 1.5:
            break
        time.sleep(0.25)
    return last or []


def look(logdir: Path, out: Path | None = None, width: int = 1400, height: int = 1000) -> dict:
    """Open TensorBoard on `logdir` in headless Chromium; screenshots into `out` (TABS' names) where given.
    Returns what a user sees: `groups` (TIME SERIES' tag groups, top to bottom), `categories` (CUSTOM
    SCALARS'), `columns` (the HPARAMS table's header, left to right) and `runs` (the runs list)."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with serve(logdir) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            for tab, filename in TABS.items():
                page.goto(f"{url}/#{tab}")
                # what each shows, and how many of it at least (past TIME SERIES' "Pinned", HPARAMS' "Trial ID")
                selector, least = {
                    "timeseries": ("span.group-title", 3),
                    "custom_scalars": ("span.category-name", 1),
                    "hparams": ("vaadin-grid-cell-content", 4),
                }[tab]
                texts = _settled(page, selector, least)
                if out is not None:
                    out.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(out / filename))
                if tab == "timeseries":
                    seen["groups"] = [t for t in texts if t and t != "Pinned"]
                elif tab == "custom_scalars":
                    seen["categories"] = [t for t in texts if t]
                else:
                    seen["columns"] = texts[: texts.index("")] if "" in texts else texts
            seen["runs"] = json.loads(urllib.request.urlopen(f"{url}/data/runs", timeout=10).read())
        finally:
            browser.close()
    return seen


def sweep(folder: Path, overrides: list[str]) -> Path:
    """`nnlab train -m OVERRIDES` into `folder`."""
    out = subprocess.run(
        [sys.executable, "-m", "nnlab", "train", "-m", *overrides, f"hydra.sweep.dir={folder}"],
        cwd=folder.parent,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"the sweep failed:\n{out.stderr[-3000:]}")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--logdir",
        type=Path,
        help="a sweep or runs folder to look at (default: a fresh sweep: " + " ".join(SWEEP) + ")",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/screenshots"),
        help="where the screenshots go (default: outputs/screenshots; --out docs replaces the docs' pictures)",
    )
    args = parser.parse_args(argv)
    if args.logdir is not None and not any(args.logdir.rglob("events.out.tfevents.*")):
        print(
            f"--logdir {args.logdir}: no TensorBoard events there (a sweep's or runs' folder, e.g. outputs/runs)",
            file=sys.stderr,
        )
        return 2
    if not can_look():
        print(
            "no browser: pip install playwright, and Debian's chromium (or: playwright install chromium)",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        logdir = args.logdir or sweep(Path(tmp) / "sweep", SWEEP)
        seen = look(logdir, args.out)
    for key, value in seen.items():
        print(f"{key}: {', '.join(map(str, value))}")
    print(f"written: {', '.join(str(args.out / f) for f in TABS.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
