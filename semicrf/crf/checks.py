"""Input validation for the Semi-CRF functions: every bad input is a ``ValueError``.

Shapes (see :mod:`semicrf.crf.api`): scores (B, T, C), transition (C, C) or (B, T, C, C),
duration (K, C), start (C,) or None, lengths (B,) integer. No broadcasting is ever applied
silently. NaN and +inf are rejected everywhere; -inf (a forbidden transition, first label or
length) is accepted in transition, duration and start only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Segment = tuple[int, int, int]


def _check_float(name: str, x: Tensor, allow_neg_inf: bool = False) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if allow_neg_inf:
        if bool(torch.isnan(x).any() | (x == float("inf")).any()):
            raise ValueError(f"{name} contains NaN or +Inf (-Inf is allowed: a forbidden entry)")
    elif not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or +-Inf")


def check_inputs(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor | None,
    start: Tensor | None,
) -> tuple[int, int, int, int]:
    """Validate the model tensors; return (B, T, C, K)."""
    _check_float("scores", scores)
    if scores.dim() != 3:
        raise ValueError(f"scores must have shape (B, T, C), got {tuple(scores.shape)}")
    batch, length, num_labels = scores.shape
    if batch < 1 or length < 1 or num_labels < 1:
        raise ValueError(f"scores must have B, T, C >= 1, got {tuple(scores.shape)}")
    _check_float("transition", transition, allow_neg_inf=True)
    pair = (num_labels, num_labels)
    if tuple(transition.shape) not in (pair, (batch, length) + pair):
        raise ValueError(
            f"transition must have shape (C, C) = {pair} or (B, T, C, C) = "
            f"{(batch, length) + pair}, got {tuple(transition.shape)}"
        )
    _check_float("duration", duration, allow_neg_inf=True)
    if duration.dim() != 2 or duration.shape[1] != num_labels:
        raise ValueError(
            f"duration must have shape (K, C) with C = {num_labels}, got {tuple(duration.shape)}"
        )
    if duration.shape[0] < 1:
        raise ValueError("duration must have K >= 1 rows (one per segment length), got K = 0")
    if start is not None:
        _check_float("start", start, allow_neg_inf=True)
        if tuple(start.shape) not in ((num_labels,), (batch, num_labels)):
            raise ValueError(f"start must have shape (C,) = ({num_labels},) or (B, C) = "
                             f"({batch}, {num_labels}), got {tuple(start.shape)}")
    for name, t in (("transition", transition), ("duration", duration), ("start", start)):
        if t is not None and t.device != scores.device:
            raise ValueError(f"{name} is on {t.device} but scores is on {scores.device}")
    if lengths is not None:
        check_lengths(lengths, batch, length, scores.device)
    return batch, length, num_labels, duration.shape[0]


SEMANTICS = ("segments", "runs")


def check_semantics(
    semantics: str, tail: Tensor | None, censored: Tensor | None, batch: int, num_labels: int,
    device: torch.device,
) -> None:
    """``semantics`` in SEMANTICS; ``tail`` (C,) and ``censored`` (B, 2) bool only for "runs".

    A censored run scores the log-survival of the length model, finite only when every
    ``tail`` entry is negative (a continuation probability below one).
    """
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
    if semantics == "segments":
        for name, value in (("tail", tail), ("censored", censored)):
            if value is not None:
                raise ValueError(f"{name} is used only with semantics='runs'; pass None")
        return
    if tail is not None:
        _check_float("tail", tail)
        if tuple(tail.shape) != (num_labels,):
            raise ValueError(f"tail must have shape (C,) = ({num_labels},), got {tuple(tail.shape)}")
        if tail.device != device:
            raise ValueError(f"tail is on {tail.device} but scores is on {device}")
    if censored is None:
        return
    if not isinstance(censored, Tensor) or censored.dtype != torch.bool:
        raise ValueError("censored must be a bool tensor of shape (B, 2)")
    if tuple(censored.shape) != (batch, 2):
        raise ValueError(f"censored must have shape (B, 2) = ({batch}, 2), got {tuple(censored.shape)}")
    if censored.device != device:
        raise ValueError(f"censored is on {censored.device} but scores is on {device}")
    if bool(censored.any()) and (tail is None or bool((tail >= 0).any())):
        raise ValueError(
            "censored runs need tail < 0 for every label (their score, the log-survival "
            "log sum_{d >= L} exp(dur(d)), is infinite otherwise); pass censored=None for a "
            "model without a length distribution"
        )


def check_lengths(lengths: Tensor, batch: int, length: int, device: torch.device) -> None:
    """lengths must be an integer tensor of shape (B,) with values in [1, T]."""
    if not isinstance(lengths, Tensor):
        raise ValueError(f"lengths must be a torch.Tensor, got {type(lengths).__name__}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got {lengths.dtype}")
    if tuple(lengths.shape) != (batch,):
        raise ValueError(f"lengths must have shape (B,) = ({batch},), got {tuple(lengths.shape)}")
    if lengths.device != device:
        raise ValueError(f"lengths is on {lengths.device} but scores is on {device}")
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > length:
        raise ValueError(f"lengths must lie in [1, T] = [1, {length}], got values in [{low}, {high}]")


def check_segments(
    segments: Sequence[Sequence[Segment]], batch: int, length: int, num_labels: int, max_len: int,
    semantics: str = "segments",
) -> None:
    """Each sequence's segments must tile [0, L) with labels in [0, C): lengths in [1, K]
    ("segments") or maximal runs, adjacent labels different, of any length ("runs")."""
    if len(segments) != batch:
        raise ValueError(f"segments must hold one list per sequence ({batch}), got {len(segments)}")
    for b, segs in enumerate(segments):
        if len(segs) == 0:
            raise ValueError(f"segments[{b}] is empty; it must tile [0, L) with L >= 1")
        position = 0
        for i, seg in enumerate(segs):
            if len(seg) != 3:
                raise ValueError(f"segments[{b}][{i}] must be (start, end, label), got {seg!r}")
            s, e, c = (int(v) for v in seg)
            if s != position:
                raise ValueError(
                    f"segments[{b}] does not tile [0, L): segment {i} starts at {s}, expected {position}"
                )
            if semantics == "runs":
                if e - s < 1:
                    raise ValueError(f"segments[{b}][{i}] = {seg!r} has length {e - s} < 1")
                if i > 0 and int(segs[i - 1][2]) == c:
                    raise ValueError(
                        f"segments[{b}][{i - 1}] and [{i}] share label {c}: with semantics='runs' "
                        "segments are maximal runs (adjacent labels differ)"
                    )
            elif not 1 <= e - s <= max_len:
                raise ValueError(
                    f"segments[{b}][{i}] = {seg!r} has length {e - s}, outside [1, K = {max_len}]"
                )
            if not 0 <= c < num_labels:
                raise ValueError(f"segments[{b}][{i}] has label {c}, outside [0, C = {num_labels})")
            position = e
        if position > length:
            raise ValueError(f"segments[{b}] ends at {position}, beyond T = {length}")
