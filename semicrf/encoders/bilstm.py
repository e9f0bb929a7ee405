"""Bidirectional LSTM encoder (``--encoder bilstm``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from semicrf.encoders.common import (
    check_encoder_inputs,
    reversal_index,
    reverse_within_lengths,
)
from semicrf.labels import length_mask


class BiLSTMEncoder(nn.Module):
    """features (B, T, D_in), lengths (B,) -> hidden (B, T, H); zeros past each length.

    ``num_layers`` stacked bidirectional layers with ceil(H/2) units per direction (for odd
    H the concatenation is projected to H); layer l + 1 reads both directions of layer l.
    Each direction is a one-layer ``nn.LSTM`` on a padded batch: the forward one reads the
    batch as is (padding comes after every valid position), the backward one reads each
    sequence reversed within its own length, so padding never reaches a valid position.
    Packed sequences would do the same, but their CPU backward at T = 20,000 took minutes
    (see docs/encoders.md).
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim),
                            ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.input_dim = input_dim
        per_direction = (hidden_dim + 1) // 2
        self.forward_lstms = nn.ModuleList()
        self.backward_lstms = nn.ModuleList()
        width = input_dim
        for _ in range(num_layers):
            self.forward_lstms.append(nn.LSTM(width, per_direction, batch_first=True))
            self.backward_lstms.append(nn.LSTM(width, per_direction, batch_first=True))
            width = 2 * per_direction
        self.output = nn.Identity() if width == hidden_dim else nn.Linear(width, hidden_dim)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """features (B, T, D_in) float, lengths (B,) int in [1, T] -> (B, T, H)."""
        check_encoder_inputs(features, lengths, self.input_dim)
        length = features.shape[1]
        lengths = lengths.to(features.device)
        index = reversal_index(lengths, length)
        x = features
        for fwd, bwd in zip(self.forward_lstms, self.backward_lstms, strict=True):
            ahead, _ = fwd(x)
            behind, _ = bwd(reverse_within_lengths(x, index))
            x = torch.cat([ahead, reverse_within_lengths(behind, index)], dim=-1)
        mask = length_mask(lengths, length).unsqueeze(-1).to(x.dtype)
        return self.output(x) * mask

