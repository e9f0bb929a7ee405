"""Pure-PyTorch bidirectional Mamba (``--encoder mamba_stub``), for CPUs and machines without
mamba-ssm.

:class:`MambaMixer` is the Mamba-1 block with mamba-ssm's parameterisation and parameter
names (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``), so
a ``mamba`` checkpoint loads into ``mamba_stub`` and back. Its selective scan is the chunked
one of :mod:`semicrf.encoders.selective_scan`.

:class:`BidirectionalMambaEncoder` is the encoder shared by ``mamba`` and ``mamba_stub``; they
differ only in the mixer they are built with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semicrf.encoders.common import (
    check_encoder_inputs,
    reversal_index,
    reverse_within_lengths,
)
from semicrf.encoders.selective_scan import DEFAULT_CHUNK_SIZE, selective_scan
from semicrf.labels import length_mask

#: Mamba-1 defaults (as in mamba-ssm): state size, conv width, expansion.
D_STATE = 16
D_CONV = 4
EXPAND = 2


class MambaMixer(nn.Module):
    """One Mamba-1 block: (B, T, d_model) -> (B, T, d_model), causal along T.

    in_proj -> (x, z); x -> causal depthwise conv1d -> SiLU -> x_proj -> (dt, B, C);
    delta = softplus(dt_proj(dt)); A = -exp(A_log); y = selective_scan(x, delta, A, B, C)
    + D * x; out_proj(y * SiLU(z)). Widths: d_inner = expand * d_model,
    dt_rank = ceil(d_model / 16). Initialisation follows mamba-ssm: A_log = log(1..N) for
    every channel, D = 1, dt_proj bias = softplus^-1 of a step size drawn log-uniformly from
    [dt_min, dt_max].
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = D_STATE,
        d_conv: int = D_CONV,
        expand: int = EXPAND,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.chunk_size = chunk_size

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1)
        )
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

        with torch.no_grad():
            bound = self.dt_rank**-0.5
            self.dt_proj.weight.uniform_(-bound, bound)
            log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
            dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """hidden_states (B, T, d_model) -> (B, T, d_model); output t sees inputs <= t only."""
        length = hidden_states.shape[1]
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        x = self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2)
        x = F.silu(x)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log)
        y = selective_scan(
            x, delta, A, B, C, self.D, chunk_size=self.chunk_size
        )
        return self.out_proj(y * F.silu(z))


class _BidirectionalLayer(nn.Module):
    """Pre-norm residual layer: x + mixer_fwd(n) + reverse(mixer_bwd(reverse(n))), n = norm(x)."""

    def __init__(self, hidden_dim: int, mixer_factory: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(hidden_dim, eps=1e-5)
        self.mixer_fwd = mixer_factory(hidden_dim)
        self.mixer_bwd = mixer_factory(hidden_dim)

    def forward(self, x: Tensor, reverse_index: Tensor) -> Tensor:
        n = self.norm(x)
        backward = self.mixer_bwd(reverse_within_lengths(n, reverse_index))
        return x + self.mixer_fwd(n) + reverse_within_lengths(backward, reverse_index)


class BidirectionalMambaEncoder(nn.Module):
    """features (B, T, D_in), lengths (B,) -> hidden (B, T, H); zeros past each length.

    Linear(D_in, H), then ``num_layers`` pre-norm residual layers, each the sum of a causal
    mixer on the sequence and a second one on the sequence reversed within its length (the
    sum of two out_proj outputs is a concat + linear), then a final RMSNorm. Padding never
    reaches a position inside a sequence: in both directions it comes after the valid part.

    Args:
        mixer_factory: d_model -> a causal (B, T, d_model) -> (B, T, d_model) module.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_layers: int,
        mixer_factory: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim),
                            ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        self.input_proj = nn.Linear(input_dim, hidden_dim)
        self.layers = nn.ModuleList(
            _BidirectionalLayer(hidden_dim, mixer_factory) for _ in range(num_layers)
        )
        self.norm_f = nn.RMSNorm(hidden_dim, eps=1e-5)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """features (B, T, D_in) float, lengths (B,) int in [1, T] -> (B, T, H)."""
        check_encoder_inputs(features, lengths, self.input_dim)
        length = features.shape[1]
        index = reversal_index(lengths.to(features.device), length)
        x = self.input_proj(features)
        for layer in self.layers:
            x = layer(x, index)
        mask = length_mask(lengths.to(features.device), length)
        return self.norm_f(x) * mask.unsqueeze(-1).to(x.dtype)


class MambaStubEncoder(BidirectionalMambaEncoder):
    """``--encoder mamba_stub``: :class:`BidirectionalMambaEncoder` on :class:`MambaMixer`.

    features (B, T, D_in), lengths (B,) -> hidden (B, T, H); zeros past each length.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_layers: int,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(
            input_dim, hidden_dim, num_layers,
            lambda d_model: MambaMixer(d_model, chunk_size=chunk_size),
        )
