"""Helpers shared by the encoders: input checks, reversal within each length."""

from __future__ import annotations

import torch
from torch import Tensor


def check_encoder_inputs(features: Tensor, lengths: Tensor, input_dim: int) -> None:
    """Raise ValueError unless features is (B, T, input_dim) floating and lengths (B,) in [1, T]."""
    if features.dim() != 3 or features.shape[2] != input_dim:
        raise ValueError(
            f"features must be (B, T, {input_dim}), got shape {tuple(features.shape)}"
        )
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating tensor, got {features.dtype}")
    batch, length = features.shape[:2]
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must be ({batch},), got shape {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got {lengths.dtype}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > length):
        raise ValueError(f"lengths must lie in [1, T={length}], got {lengths.tolist()}")


def reversal_index(lengths: Tensor, length: int) -> Tensor:
    """(B, T) int64 index that reverses positions [0, L_b) of row b and leaves padding in place.

    Gathering with it twice is the identity. Padding stays after the valid positions, so a
    causal model run on the reversed sequence never sees it before a valid position.
    """
    positions = torch.arange(length, device=lengths.device)
    lens = lengths.to(positions.device, torch.int64).unsqueeze(1)
    return torch.where(positions.unsqueeze(0) < lens, lens - 1 - positions, positions)


def reverse_within_lengths(x: Tensor, index: Tensor) -> Tensor:
    """x (B, T, F) gathered along T with a :func:`reversal_index` (B, T) -> (B, T, F)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def check_sizes(**sizes: int) -> None:
    """Raise ValueError naming the first size below 1 (e.g. ``check_sizes(input_dim=0)``)."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def to_conv_layout(x: Tensor) -> Tensor:
    """x (B, T, F) -> (B, F, 1, T) view for ``nn.Conv2d`` with a (1, k) kernel.

    For a contiguous x the view is already in ``torch.channels_last`` format, the layout the
    oneDNN convolutions prefer on CPU, so no copy is made.
    """
    return x.permute(0, 2, 1).unsqueeze(2)


def from_conv_layout(x: Tensor) -> Tensor:
    """x (B, F, 1, T) -> (B, T, F); the inverse of :func:`to_conv_layout` (a view)."""
    return x.squeeze(2).permute(0, 2, 1)
