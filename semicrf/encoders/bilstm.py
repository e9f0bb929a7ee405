"""Bidirectional LSTM encoder."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BiLSTMEncoder(nn.Module):
    """features (B, T, D_in), lengths (B,) -> hidden (B, T, H); zeros past each length.

    ``num_layers`` stacked bidirectional LSTM layers with H/2 units per direction (H even,
    else rounded up and projected); packed sequences keep padding out of the backward
    direction.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        per_direction = (hidden_dim + 1) // 2
        self.lstm = nn.LSTM(input_dim, per_direction, num_layers, batch_first=True,
                            bidirectional=True)
        self.output = (nn.Identity() if 2 * per_direction == hidden_dim
                       else nn.Linear(2 * per_direction, hidden_dim))

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(features, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.lstm(packed)
        hidden, _ = pad_packed_sequence(out, batch_first=True, total_length=features.shape[1])
        return self.output(hidden)
