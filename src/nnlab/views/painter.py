"""Where a figure becomes pixels and a file: render() here, or a Painter's two worker processes while a
stack trains (its members' figures then cost the loop nothing); save_figure() for a figure made here. Every
file through run_files.folder.write_file: replaced atomically, never through a link."""

from __future__ import annotations

import io
import signal
from dataclasses import dataclass


def render(draw, args: tuple, png: str | None = None):
    """`draw(*args)` (a function that returns a matplotlib Figure) as an RGB array [H, W, 3], also saved
    as the PNG file `png` if given. Runs here or in a Painter's worker."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(draw(*args))
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    if png is not None:
        from matplotlib.image import imsave

        from nnlab.run_files.folder import write_file

        buffer = io.BytesIO()
        imsave(buffer, image, format="png")
        write_file(png, buffer.getvalue())  # replaced atomically: never through a link
    return image


class Painter:
    """Draws figures in two worker processes while training goes on: a batched sweep's members' figures
    (their activations, their curves) then cost the training loop nothing. submit() returns a Drawing;
    where the worker cannot start or dies, the drawing is done here instead."""

    def __init__(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        try:
            self.pool = ProcessPoolExecutor(
                2, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start
            )
        except (OSError, ValueError):  # no processes to be had: draw here
            self.pool = None

    def submit(self, fn, *args) -> Drawing:
        future = None
        if self.pool is not None:
            try:
                future = self.pool.submit(fn, *args)
            except RuntimeError:  # a broken or shut-down pool
                future = None
        return Drawing(fn, args, future)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=False)


@dataclass
class Drawing:
    """A figure being drawn: result() waits for it (or draws it here, if there is no worker for it)."""

    fn: object
    args: tuple
    future: object = None

    def result(self):
        if self.future is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                return self.future.result()
            except BrokenProcessPool:  # the worker died (killed, out of memory): draw it here
                pass
        return self.fn(*self.args)


def _worker_start() -> None:
    """In the painter's worker: Ctrl-C is for the training process (it saves and stops), not for this one."""

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def save_figure(fig, path) -> None:
    """A matplotlib figure as a PNG file, replaced atomically (never written through a link)."""

    from nnlab.run_files.folder import write_file

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_file(path, buffer.getvalue())
