"""Atomic file writes: the one way this package writes a results or data file.

A file is written to a fresh temporary name in the target's directory, flushed to disk and
renamed over the target (``os.replace`` is atomic on POSIX), so a reader, or a run resumed
after ``kill -9``, sees either the old complete file or the new complete file, never a
half-written one. The temporary file is removed if writing fails. :func:`read_json` is the
matching reader; :func:`locked` serialises a read-modify-write of one file between processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temporary binary file next to ``path``, then rename it to
    ``path`` (parents created). Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name ("x": never an existing file), created with the umask's permissions
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON (no NaN) atomically."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str], name: str) -> Any:
    """The JSON content of the existing file ``path``; invalid JSON raises a one-line
    ``ValueError`` that starts with ``name`` (how the caller calls the file)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not valid JSON: {err}") from None


def save_torch(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` atomically (checkpoints)."""
    import torch

    return atomic_write(path, lambda handle: torch.save(obj, handle))


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` atomically."""
    return atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


@contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on the lock file ``path`` (created, parents
    too) inside the block: processes that update one results file take turns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
