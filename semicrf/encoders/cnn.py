"""Dilated residual 1-D CNN encoder (``--encoder cnn``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from semicrf.encoders.common import (
    check_encoder_inputs,
    check_sizes,
    from_conv_layout,
    to_conv_layout,
)
from semicrf.labels import length_mask

#: Dilations of one cycle of residual blocks; with kernel 9 a cycle sees 1 + 8 * 63 = 505 bases.
DILATIONS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
KERNEL_SIZE = 9


class CNNEncoder(nn.Module):
    """features (B, T, D_in), lengths (B,) -> hidden (B, T, H); zeros past each length.

    A position-wise linear stem D_in -> H, then ``num_layers`` cycles of residual blocks
    ``x <- (x + conv_d(relu(x))) * mask``, one block per dilation d in :data:`DILATIONS`,
    each conv H -> H with kernel :data:`KERNEL_SIZE` and "same" zero padding. Every
    activation is zero past each sequence's length before it enters a convolution, so a
    valid position sees exactly what it would see with the sequence alone. Receptive field:
    1 + num_layers * (KERNEL_SIZE - 1) * sum(DILATIONS) positions, centred.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        check_sizes(input_dim=input_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        self.input_dim = input_dim
        self.stem = nn.Linear(input_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            nn.Conv2d(hidden_dim, hidden_dim, (1, KERNEL_SIZE), dilation=(1, d),
                      padding=(0, d * (KERNEL_SIZE // 2)))
            for _ in range(num_layers) for d in DILATIONS
        )

    @property
    def receptive_field(self) -> int:
        """Number of input positions (centred) that one output position depends on."""
        return 1 + sum((KERNEL_SIZE - 1) * block.dilation[1] for block in self.blocks)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """features (B, T, D_in) float, lengths (B,) int in [1, T] -> (B, T, H)."""
        check_encoder_inputs(features, lengths, self.input_dim)
        mask = length_mask(lengths.to(features.device), features.shape[1]).unsqueeze(-1)
        x = self.stem(features).masked_fill(~mask, 0.0).contiguous()
        x, conv_mask = to_conv_layout(x), to_conv_layout(mask.to(x.dtype))
        for block in self.blocks:
            x = (x + block(F.relu(x))) * conv_mask
        return from_conv_layout(x)
