"""On-disk format of a generated dataset, and its loader.

A dataset directory holds::

    meta.json               format, version, seed, config, class names, per-split segments
    train.tokens.npy        (N_train, T) uint8 base codes A=0 C=1 G=2 T=3 N=4 (numpy .npy)
    val.tokens.npy
    test.tokens.npy

``meta.json["splits"][split]`` has ``num_sequences``, ``tokens_file``, ``segments`` (one list
of ``[start, end_exclusive, label]`` per sequence, tiling ``[0, T)``),
``last_segment_censored`` (per sequence: was the last segment cut at T),
``last_segment_drawn_length`` (its length before the cut) and, optionally,
``first_segment_censored`` (per sequence: does the first segment continue before position 0,
as in a window cut from a real genome; all False when absent). Per-position labels are not stored:
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

from semicrf.atomic_io import atomic_write, read_json
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
    ``first_segment_censored``: the first segment began before position 0 (its true length
    is longer). ``index``: position of the sequence in its split.
    """

    tokens: np.ndarray
    labels: np.ndarray
    segments: list[tuple[int, int, int]]
    last_segment_censored: bool
    index: int
    first_segment_censored: bool = False

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
    meta = read_json(meta_path, repr(str(meta_path)))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(meta_path)!r} is not a {FORMAT_NAME} meta file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{str(meta_path)!r} has format_version {meta.get('format_version')!r}"
                         f"; this semicrf reads version {FORMAT_VERSION}")
    return meta


def _split_info(meta: Mapping[str, Any], split: str, where: str) -> tuple[int, int, dict[str, Any]]:
    """(num_sequences, seq_length, the split's entry) of ``meta``, checked: every per-sequence
    list holds one entry per sequence. Errors are one line naming ``where`` (the meta file)."""
    splits = meta.get("splits")
    if not isinstance(splits, dict):
        raise ValueError(f"{where} has no 'splits' object")
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; this dataset has {sorted(splits)}")
    info = splits[split]
    length, num_classes = meta.get("seq_length"), meta.get("num_classes")
    for key, value in (("seq_length", length), ("num_classes", num_classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
    n = info.get("num_sequences") if isinstance(info, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{where}: splits.{split}.num_sequences must be an integer >= 0, got {n!r}")
    if not isinstance(info.get("tokens_file"), str):
        raise ValueError(f"{where}: splits.{split}.tokens_file is missing")
    for key in ("segments", "last_segment_censored", "first_segment_censored"):
        if key == "first_segment_censored" and key not in info:
            continue
        value = info.get(key)
        if not isinstance(value, list) or len(value) != n:
            got = f"{len(value)} entries" if isinstance(value, list) else repr(type(value).__name__)
            raise ValueError(f"{where}: splits.{split}.{key} must list one entry per sequence "
                             f"({n}), got {got}")
        if key != "segments" and not all(isinstance(v, bool) for v in value):
            raise ValueError(f"{where}: splits.{split}.{key} must hold true/false values")
    return n, length, info


def _segments(raw: Any, num_classes: int, where: str) -> list[tuple[int, int, int]]:
    """One sequence's segment list as int triples, labels checked to lie in [0, num_classes)."""
    try:
        segments = [(int(s), int(e), int(c)) for s, e, c in raw]
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a list of [start, end_exclusive, label]") from None
    if any(not 0 <= c < num_classes for _, _, c in segments):
        raise ValueError(f"{where} has a label outside [0, {num_classes})")
    return segments


def load_split(data_dir: str | os.PathLike[str], split: str) -> list[SequenceRecord]:
    """Load one split (``"train"``, ``"val"`` or ``"test"``) as a list of records.

    Each :class:`SequenceRecord` has ``.tokens`` (uint8 (T,)), ``.labels`` (int64 (T,)),
    ``.segments`` (list of ``(start, end_exclusive, label)``) and the censoring flags. A
    malformed directory raises ``ValueError`` (``FileNotFoundError`` for a missing file) with
    a one-line message naming the file and what is wrong.
    """
    meta = read_meta(data_dir)
    where = str(Path(data_dir) / META_FILE)
    n, length, info = _split_info(meta, split, where)
    file = Path(data_dir) / info["tokens_file"]
    if not file.is_file():
        raise FileNotFoundError(f"token file {str(file)!r} of split {split!r} is missing")
    try:
        tokens = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{str(file)!r} is not a readable .npy file: {err}") from None
    if tokens.dtype != np.uint8 or tokens.shape != (n, length):
        raise ValueError(f"{str(file)!r} holds {tokens.dtype} {tokens.shape}; "
                         f"meta.json says uint8 ({n}, {length})")
    if tokens.size and int(tokens.max()) >= len(ALPHABET):
        raise ValueError(f"{str(file)!r} has base codes above {len(ALPHABET) - 1} ({ALPHABET})")
    first = info.get("first_segment_censored", [False] * n)
    records = []
    for i in range(n):
        seg_where = f"{where}: splits.{split}.segments[{i}]"
        segments = _segments(info["segments"][i], int(meta["num_classes"]), seg_where)
        try:
            labels = labels_from_segments(segments, length)
        except ValueError as err:
            raise ValueError(f"{seg_where}: {err}") from None
        records.append(
            SequenceRecord(
                tokens=tokens[i],
                labels=labels,
                segments=segments,
                last_segment_censored=info["last_segment_censored"][i],
                index=i,
                first_segment_censored=first[i],
            )
        )
    return records
