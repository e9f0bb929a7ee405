"""One wide linear convolution over the input features (``--encoder conv``)."""

from __future__ import annotations

from torch import Tensor, nn

from semicrf.encoders.common import (
    check_encoder_inputs,
    check_sizes,
    from_conv_layout,
    to_conv_layout,
)
from semicrf.labels import length_mask

#: Width of the convolution: positions t - 16 .. t + 16.
KERNEL_SIZE = 33


class LinearConvEncoder(nn.Module):
    """features (B, T, D_in), lengths (B,) -> hidden (B, T, H); zeros past each length.

    hidden[t] = b + sum_j W_j features[t + j], j in [-16, 16], with features taken as zero
    outside [0, L): an affine function of the inputs in a window of :data:`KERNEL_SIZE`
    positions, no nonlinearity. Over one-hot bases this class holds any position-specific
    weight matrix on a 33-base window (e.g. a site's log-odds profile). ``num_layers`` is
    checked (>= 1) but has no effect: this encoder is one layer by definition.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        check_sizes(input_dim=input_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        self.input_dim = input_dim
        self.conv = nn.Conv2d(input_dim, hidden_dim, (1, KERNEL_SIZE),
                              padding=(0, KERNEL_SIZE // 2))

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """features (B, T, D_in) float, lengths (B,) int in [1, T] -> (B, T, H)."""
        check_encoder_inputs(features, lengths, self.input_dim)
        mask = length_mask(lengths.to(features.device), features.shape[1]).unsqueeze(-1)
        x = to_conv_layout(features.masked_fill(~mask, 0.0).contiguous())
        return from_conv_layout(self.conv(x)).masked_fill(~mask, 0.0)
