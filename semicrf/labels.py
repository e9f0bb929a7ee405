"""The label scheme and its conversions: class indices and names, padding, masks, segments.

Labels are per-position integers. With ``num_classes = 3``: 0 intergenic, 1 exon,
2 intron. With ``num_classes = 5`` the scheme adds 3 5'UTR and 4 3'UTR. Positions
labelled :data:`PAD_LABEL` (-100, PyTorch's ``ignore_index``) are padding; padding is
always a suffix. A segment is ``(start, end_exclusive, label)``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
from torch import Tensor

INTERGENIC = 0
EXON = 1
INTRON = 2
UTR5 = 3
UTR3 = 4

#: Name of each class, indexed by label.
CLASS_NAMES: tuple[str, ...] = ("intergenic", "exon", "intron", "utr5", "utr3")

#: Label of padding positions (ignored by metrics and losses; PyTorch's ``ignore_index``).
PAD_LABEL = -100


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names of labels ``0 .. num_classes - 1``.

    The benchmark uses 3 or 5 classes; any prefix of the scheme (1 to 5 classes) is
    accepted so that small test cases can use fewer labels.
    """
    if isinstance(num_classes, bool):
        raise ValueError(f"num_classes must be an int, got {num_classes!r}")
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise ValueError(f"num_classes must be an int, got {num_classes!r}") from None
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(CLASS_NAMES)}], got {num_classes}")
    return CLASS_NAMES[:num_classes]


def length_mask(lengths: Tensor, length: int) -> Tensor:
    """(B, T) bool on ``lengths``' device, True at positions t < lengths[b]; lengths (B,)."""
    positions = torch.arange(length, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def labels_from_segments(segments: Any, length: int) -> np.ndarray:
    """Per-position labels (int64, shape (length,)) of segments tiling ``[0, length)``.

    ``segments``: a sequence of ``(start, end_exclusive, label)`` or an (S, 3) array;
    raises ``ValueError`` unless they tile ``[0, length)`` with non-empty segments.
    """
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 3)
    if seg.shape[0] == 0 or seg[0, 0] != 0 or seg[-1, 1] != length or np.any(
        seg[1:, 0] != seg[:-1, 1]
    ) or np.any(seg[:, 1] <= seg[:, 0]):
        raise ValueError(f"segments do not tile [0, {length})")
    return np.repeat(seg[:, 2], seg[:, 1] - seg[:, 0])


def runs(labels: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of a flat label array that do not cross sequence starts.

    ``labels`` (N,) int, ``offsets`` (S + 1,) start of each sequence; returns ``starts``,
    ``ends`` (exclusive) and ``labels`` of the runs, each (R,).
    """
    n = labels.size
    is_start = np.zeros(n, dtype=bool)
    if n:
        is_start[1:] = labels[1:] != labels[:-1]
        is_start[offsets[:-1][offsets[:-1] < n]] = True
    starts = np.flatnonzero(is_start)
    ends = np.append(starts[1:], n) if starts.size else starts.copy()
    return starts, ends, labels[starts]


def label_runs(labels: Any) -> list[tuple[int, int, int]]:
    """Segments of one sequence: its maximal runs ``(start, end_exclusive, label)``, with
    the ``PAD_LABEL`` suffix excluded. ``labels``: 1-D integer array, list or CPU tensor."""
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64, copy=False)
    pad = np.flatnonzero(arr == PAD_LABEL)
    arr = arr[: pad[0]] if pad.size else arr
    s, e, lab = runs(arr, np.array([0, arr.size], dtype=np.int64))
    return list(zip(s.tolist(), e.tolist(), lab.tolist(), strict=True))
