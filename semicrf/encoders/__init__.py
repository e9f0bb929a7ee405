"""DNA encoders: features (B, T, D_in) + lengths (B,) -> hidden states (B, T, H).

- ``bilstm``: :class:`BiLSTMEncoder`.
- ``mamba``: :class:`MambaEncoder`, bidirectional Mamba on mamba-ssm (CUDA, ``semicrf[gpu]``).
- ``mamba_stub``: :class:`MambaStubEncoder`, the same network in pure PyTorch (any device).
- ``cnn``: :class:`CNNEncoder`, a dilated residual 1-D CNN.
- ``cnn_bilstm``: :class:`CNNBiLSTMEncoder`, that CNN followed by the BiLSTM.
- ``conv``: :class:`LinearConvEncoder`, one wide linear convolution (no nonlinearity).

Every encoder's ``forward(features, lengths)`` returns zeros past each sequence's length,
and the output at a valid position never depends on padding. See docs/encoders.md.
"""

from __future__ import annotations

from torch import nn

from semicrf.encoders.bilstm import BiLSTMEncoder
from semicrf.encoders.cnn import CNNEncoder
from semicrf.encoders.cnn_bilstm import CNNBiLSTMEncoder
from semicrf.encoders.conv import LinearConvEncoder
from semicrf.encoders.mamba_ssm_wrapper import MambaEncoder, MambaUnavailableError
from semicrf.encoders.mamba_stub import BidirectionalMambaEncoder, MambaMixer, MambaStubEncoder
from semicrf.encoders.selective_scan import selective_scan, selective_scan_reference

ENCODER_NAMES: tuple[str, ...] = ("bilstm", "mamba", "mamba_stub", "cnn", "cnn_bilstm", "conv")

__all__ = [
    "ENCODER_NAMES",
    "BiLSTMEncoder",
    "BidirectionalMambaEncoder",
    "CNNBiLSTMEncoder",
    "CNNEncoder",
    "LinearConvEncoder",
    "MambaEncoder",
    "MambaMixer",
    "MambaStubEncoder",
    "MambaUnavailableError",
    "build_encoder",
    "selective_scan",
    "selective_scan_reference",
]


def build_encoder(name: str, input_dim: int, hidden_dim: int, num_layers: int) -> nn.Module:
    """The encoder called ``name`` (one of :data:`ENCODER_NAMES`).

    Its ``forward(features (B, T, input_dim) float, lengths (B,) int) -> (B, T, hidden_dim)``.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones) or a size < 1.
        MambaUnavailableError: ``mamba`` without mamba-ssm or CUDA (an ImportError).
    """
    if name == "bilstm":
        return BiLSTMEncoder(input_dim, hidden_dim, num_layers)
    if name == "mamba":
        return MambaEncoder(input_dim, hidden_dim, num_layers)
    if name == "mamba_stub":
        return MambaStubEncoder(input_dim, hidden_dim, num_layers)
    if name == "cnn":
        return CNNEncoder(input_dim, hidden_dim, num_layers)
    if name == "cnn_bilstm":
        return CNNBiLSTMEncoder(input_dim, hidden_dim, num_layers)
    if name == "conv":
        return LinearConvEncoder(input_dim, hidden_dim, num_layers)
    raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODER_NAMES)}")
