"""TensorBoard's event files, written here and now: one file per writer, records appended in order,
flushed at most every FLUSH_S seconds and at the end. Every tracker of a stack's members writes its own
file, so a writer must cost little: torch's SummaryWriter starts a thread per file (a stack of 64 ran 64
threads that woke on every event) and builds a protobuf per scalar (~37 µs an event here); a step's scalars
are encoded by hand below (~8 µs, most of it the record's checksum), the rest (images, histograms, text,
layouts, hparams) through tensorboard's own protobufs.

The format (TFRecord): each record is [length u64][masked crc32c of the length u32][data][masked crc32c of
the data u32]; the data is one serialized `Event` proto. The file's first event names the version; a
resumed run's first events also say from which step on the earlier files' events are superseded (TensorBoard
hides them: SummaryWriter's purge_step).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path

FLUSH_S = 5.0  # the most seconds a record waits in memory (TensorBoard shows a live run this far behind)
_FILES = itertools.count()  # this process's files, numbered (two writers in one second: two names)


class EventFile:
    """A TensorBoard event file in `folder` (created), written synchronously."""

    def __init__(self, folder: str | Path, purge_step: int | None = None, suffix: str = ""):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_FILES)}"
        self.path = folder / (name + suffix)
        self.file = open(self.path, "xb")  # noqa: SIM115 (closed by close(); a new file: never through a link)
        self.flushed = time.monotonic()
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        self.event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:  # events of this step and later in earlier files are hidden
            self.event(Event(step=purge_step, file_version="brain.Event:2"))
            self.event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def scalars(self, step: int, values: Mapping[str, float], wall: float | None = None) -> None:
        """One event holding a step's scalars (TensorBoard's simple_value, float32)."""
        if not values:
            return
        parts = [_scalar_value(tag, v) for tag, v in values.items()]
        summary = b"".join(b"\x0a" + _varint(len(p)) + p for p in parts)
        self._write(
            b"\x09"
            + struct.pack("<d", time.time() if wall is None else wall)
            + b"\x10"
            + _varint(int(step) & 0xFFFFFFFFFFFFFFFF)
            + b"\x2a"
            + _varint(len(summary))
            + summary
        )

    def summary(self, summary, step: int | None = None, wall: float | None = None) -> None:
        """A tensorboard `Summary` proto (an image, a histogram, text, a layout, hparams) as one event."""
        from tensorboard.compat.proto.event_pb2 import Event

        event = Event(summary=summary, wall_time=time.time() if wall is None else wall)
        if step is not None:
            event.step = int(step)
        self.event(event)

    def image(self, tag: str, image, step: int, dataformats: str = "CHW") -> None:
        from torch.utils.tensorboard.summary import image as image_summary

        self.summary(image_summary(tag, image, dataformats=dataformats), step)

    def histogram(self, tag: str, values, step: int) -> None:
        from torch.utils.tensorboard.summary import histogram

        self.summary(histogram(tag, values, _bins()), step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        from torch.utils.tensorboard.summary import text as text_summary

        self.summary(text_summary(tag, text), step)

    def custom_scalars(self, layout: dict) -> None:
        from torch.utils.tensorboard.summary import custom_scalars

        self.summary(custom_scalars(layout))

    def event(self, event) -> None:
        self._write(event.SerializeToString())

    def _write(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self.file.write(header + _header_crc(header))
        self.file.write(data + _crc_bytes(data))
        if time.monotonic() - self.flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self.file.flush()
        self.flushed = time.monotonic()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()

    def __enter__(self) -> EventFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _scalar_value(tag: str, value: float) -> bytes:
    """A Summary.Value: tag (field 1), simple_value (field 2, float32; beyond its range: ±inf)."""
    try:
        number = struct.pack("<f", value)
    except OverflowError:
        number = struct.pack("<f", math.copysign(math.inf, value))
    return _tag_field(tag) + number


@functools.lru_cache(maxsize=4096)
def _tag_field(tag: str) -> bytes:
    """A value's tag field and the simple_value field's key (a run logs the same few hundred tags)."""
    name = tag.encode()
    return b"\x0a" + _varint(len(name)) + name + b"\x15"


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _crc_tables() -> tuple[tuple[int, ...], ...]:
    """CRC-32C's byte table and the three that step it four bytes at a time (slicing by 4)."""
    first = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        first.append(c)
    tables = [tuple(first)]
    for _ in range(3):
        before = tables[-1]
        tables.append(tuple((before[i] >> 8) ^ first[before[i] & 0xFF] for i in range(256)))
    return tuple(tables)


_T0, _T1, _T2, _T3 = _crc_tables()


def masked_crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, masked as TFRecord stores it; four bytes a step (~1.3x one a step)."""
    crc, whole = 0xFFFFFFFF, len(data) & ~3
    for (word,) in struct.iter_unpack("<I", data[:whole]):
        crc ^= word
        crc = _T3[crc & 0xFF] ^ _T2[(crc >> 8) & 0xFF] ^ _T1[(crc >> 16) & 0xFF] ^ _T0[crc >> 24]
    for b in data[whole:]:
        crc = _T0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _crc_bytes(data: bytes) -> bytes:
    return struct.pack("<I", masked_crc32c(data))


@functools.lru_cache(maxsize=4096)
def _header_crc(header: bytes) -> bytes:
    """The checksum of a record's length header, remembered (a run's rows are mostly of a few lengths)."""
    return _crc_bytes(header)


@functools.cache
def _bins() -> list[float]:
    """TensorBoard's default histogram buckets (SummaryWriter's default_bins)."""
    v, buckets = 1e-12, []
    while v < 1e20:
        buckets.append(v)
        v *= 1.1
    return [-b for b in reversed(buckets)] + [0] + buckets
