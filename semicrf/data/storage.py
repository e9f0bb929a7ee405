"""On-disk format of a generated dataset, and its loader.

A dataset directory holds::

    meta.json               format, version, seed, config, class names, per-split segments
    train.tokens.npy        (N_train, T) uint8 base codes A=0 C=1 G=2 T=3 N=4 (numpy .npy)
    val.tokens.npy
    test.tokens.npy

``meta.json["splits"][split]`` has ``num_sequences``, ``tokens_file``, ``segments`` (one list
of ``[start, end_exclusive, label]`` per sequence, tiling ``[0, T)``),
``last_segment_censored`` (per sequence: was the last segment cut at T) and
``last_segment_drawn_length`` (its length before the cut). Per-position labels are not stored:
they are the expansion of the segments. Files are written through a temporary name and
renamed; ``meta.json`` is written last, so a directory with a ``meta.json`` is complete.
See ``docs/data.md``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semicrf.atomic_io import atomic_write
from semicrf.labels import labels_from_segments

FORMAT_NAME = "semicrf-synthetic-genome"
FORMAT_VERSION = 1
META_FILE = "meta.json"
SPLITS: tuple[str, ...] = ("train", "val", "test")
ALPHABET = "ACGTN"


@dataclass(frozen=True, eq=False)
class SequenceRecord:
    """One sequence with its ground truth.

    ``tokens``: uint8 (T,), codes A=0 C=1 G=2 T=3 N=4. ``labels``: int64 (T,).
    ``segments``: ``(start, end_exclusive, label)`` tiling ``[0, T)``, maximal runs of labels.
    ``last_segment_censored``: the last segment was cut at T (its true length is longer).
    ``index``: position of the sequence in its split.
    """

    tokens: np.ndarray
    labels: np.ndarray
    segments: list[tuple[int, int, int]]
    last_segment_censored: bool
    index: int

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def tokens_file(split: str) -> str:
    """File name of the token matrix of ``split``."""
    return f"{split}.tokens.npy"


def prepare_output_dir(output_dir: str | os.PathLike[str]) -> Path:
    """Create ``output_dir`` (with parents) and check it is a writable directory.

    Raises ``NotADirectoryError`` if it (or a parent) is a file and ``PermissionError`` if it
    cannot be created or written to.
    """
    path = Path(output_dir)
    if str(output_dir) == "":
        raise ValueError("output_dir must not be empty")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output directory {str(path)!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a parent is a file
        raise NotADirectoryError(
            f"cannot create output directory {str(path)!r}: a parent is not a directory"
        ) from err
    except NotADirectoryError as err:
        raise NotADirectoryError(
            f"cannot create output directory {str(path)!r}: a parent is not a directory"
        ) from err
    except OSError as err:
        raise PermissionError(f"cannot create output directory {str(path)!r}: {err}") from err
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PermissionError(f"output directory {str(path)!r} is not writable: {err}") from err
    return path


def write_tokens(output_dir: Path, split: str, tokens: np.ndarray) -> None:
    """Write the (N, T) uint8 token matrix of ``split`` as ``{split}.tokens.npy``."""
    if tokens.dtype != np.uint8 or tokens.ndim != 2:
        raise ValueError(f"tokens must be a 2-D uint8 array, got {tokens.dtype} {tokens.shape}")
    atomic_write(output_dir / tokens_file(split),
                  lambda fh: np.save(fh, tokens, allow_pickle=False))


def remove_meta(output_dir: Path) -> None:
    """Delete an old ``meta.json`` so that an interrupted rewrite never looks complete."""
    (output_dir / META_FILE).unlink(missing_ok=True)


def write_meta(output_dir: Path, meta: Mapping[str, Any]) -> None:
    """Write ``meta.json`` deterministically (dict order kept, one sequence's segments a line)."""
    text = _dumps(meta, 0) + "\n"
    atomic_write(output_dir / META_FILE, lambda fh: fh.write(text.encode("utf-8")))


def _is_scalar_list(x: Any) -> bool:
    return isinstance(x, list) and all(not isinstance(v, (dict, list)) for v in x)


def _dumps(obj: Any, depth: int) -> str:
    """JSON with dicts indented, lists of scalars (and of scalar lists) kept on one line."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(obj, Mapping):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(obj[k], depth + 1)}"
                 for k in obj]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        obj = list(obj)
        if all(not isinstance(v, (dict, list)) or _is_scalar_list(v) for v in obj):
            return json.dumps(obj, separators=(", ", ": "), allow_nan=False)
        items = [f"{inner}{_dumps(v, depth + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False)


def read_meta(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``meta.json`` of a dataset directory.

    Keys include ``format``, ``format_version``, ``semicrf_version``, ``seed``,
    ``num_classes``, ``class_names``, ``seq_length``, ``alphabet``, ``generator`` (the full
    :meth:`GeneratorConfig.to_dict`) and ``splits``. Raises ``FileNotFoundError`` if the
    directory or its ``meta.json`` is missing and ``ValueError`` if it is not this format.
    """
    path = Path(data_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"data directory {str(path)!r} does not exist")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{str(meta_path)!r} not found: not a generated dataset (run `semicrf generate`)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(meta_path)!r} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(meta_path)!r} is not a {FORMAT_NAME} meta file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{str(meta_path)!r} has format_version {meta.get('format_version')!r}"
                         f"; this semicrf reads version {FORMAT_VERSION}")
    return meta


def load_split(data_dir: str | os.PathLike[str], split: str) -> list[SequenceRecord]:
    """Load one split (``"train"``, ``"val"`` or ``"test"``) as a list of records.

    Each :class:`SequenceRecord` has ``.tokens`` (uint8 (T,)), ``.labels`` (int64 (T,)) and
    ``.segments`` (list of ``(start, end_exclusive, label)``).
    """
    meta = read_meta(data_dir)
    splits = meta["splits"]
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; this dataset has {sorted(splits)}")
    info = splits[split]
    file = Path(data_dir) / info["tokens_file"]
    if not file.is_file():
        raise FileNotFoundError(f"token file {str(file)!r} of split {split!r} is missing")
    tokens = np.load(file, allow_pickle=False)
    n, length = info["num_sequences"], meta["seq_length"]
    if tokens.dtype != np.uint8 or tokens.shape != (n, length):
        raise ValueError(f"{str(file)!r} holds {tokens.dtype} {tokens.shape}; "
                         f"meta.json says uint8 ({n}, {length})")
    records = []
    for i in range(n):
        segments = [(int(s), int(e), int(c)) for s, e, c in info["segments"][i]]
        records.append(
            SequenceRecord(
                tokens=tokens[i],
                labels=labels_from_segments(segments, length),
                segments=segments,
                last_segment_censored=bool(info["last_segment_censored"][i]),
                index=i,
            )
        )
    return records
