"""The dilated CNN followed by the BiLSTM (``--encoder cnn_bilstm``)."""

from __future__ import annotations

from torch import Tensor, nn

from semicrf.encoders.bilstm import BiLSTMEncoder
from semicrf.encoders.cnn import CNNEncoder


class CNNBiLSTMEncoder(nn.Module):
    """features (B, T, D_in), lengths (B,) -> hidden (B, T, H); zeros past each length.

    ``CNNEncoder(D_in, H, num_layers)`` reads local motifs; ``BiLSTMEncoder(H, H, num_layers)``
    carries them along the whole sequence. Both keep padding away from valid positions, so
    the composition does too.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        self.cnn = CNNEncoder(input_dim, hidden_dim, num_layers)
        self.bilstm = BiLSTMEncoder(hidden_dim, hidden_dim, num_layers)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """features (B, T, D_in) float, lengths (B,) int in [1, T] -> (B, T, H)."""
        return self.bilstm(self.cnn(features, lengths), lengths)
