"""DNA encoders: features (B, T, D_in) + lengths (B,) -> hidden states (B, T, H)."""

from __future__ import annotations

from torch import nn

from semicrf.encoders.bilstm import BiLSTMEncoder

ENCODER_NAMES: tuple[str, ...] = ("bilstm", "mamba", "mamba_stub")


def build_encoder(name: str, input_dim: int, hidden_dim: int, num_layers: int) -> nn.Module:
    """The encoder called ``name``; every one maps (B, T, D_in), (B,) to (B, T, hidden_dim)."""
    if name == "bilstm":
        return BiLSTMEncoder(input_dim, hidden_dim, num_layers)
    if name in ("mamba", "mamba_stub"):
        raise ValueError(f"encoder {name!r} is not available in this build; use 'bilstm'")
    raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODER_NAMES)}")
