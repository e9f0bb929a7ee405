"""``SemiCRFHead``: the structured output layer put on top of an encoder."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from semicrf.crf import api
from semicrf.crf.likelihood import IGNORE_LABEL, label_nll


class SemiCRFHead(nn.Module):
    """Projects hidden states to emission scores and scores segmentations with a Semi-CRF.

    Args:
        hidden_dim: H, the encoder's output size.
        num_labels: C.
        max_duration: K, the longest single segment (K = 1 is a linear-chain CRF).
        duration: ``"learned"`` (a trained (K, C) table) or ``"uniform"`` (fixed at zero).
        backend: passed to :func:`semicrf.log_partition` ("auto", "reference", "triton").

    Label runs longer than K are scored as the total probability of every way to split them
    into segments of at most K (see :mod:`semicrf.crf.likelihood`); no split is imposed.

    Shapes: hidden (B, T, H) float, lengths (B,) int, labels (B, T) int with -100 (or any
    value) past each length.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_labels: int,
        max_duration: int,
        duration: Literal["learned", "uniform"] = "learned",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if max_duration < 1:
            raise ValueError(f"max_duration (K) must be >= 1, got {max_duration}")
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        if duration not in ("learned", "uniform"):
            raise ValueError(f"duration must be 'learned' or 'uniform', got {duration!r}")
        self.num_labels, self.max_duration = num_labels, max_duration
        self.duration_mode, self.backend = duration, backend
        self.projection = nn.Linear(hidden_dim, num_labels)
        self.transition = nn.Parameter(torch.zeros(num_labels, num_labels))
        self.start = nn.Parameter(torch.zeros(num_labels))
        table = torch.zeros(max_duration, num_labels)
        if duration == "learned":
            self.duration = nn.Parameter(table)
        else:
            self.register_buffer("duration", table)

    def scores(self, hidden: Tensor) -> Tensor:
        """Emission scores (B, T, C)."""
        return self.projection(hidden)

    def nll(self, hidden: Tensor, lengths: Tensor, labels: Tensor) -> Tensor:
        """Negative log-likelihood of the labels per sequence (B,), always >= 0.

        Non-finite emission scores give NaN (so a training loop can stop with a message)
        instead of the ``ValueError`` the functional API raises for them.
        """
        scores = self.scores(hidden)
        if not bool(torch.isfinite(scores).all()):
            return scores.new_full(lengths.shape, float("nan"))
        return label_nll(
            scores, self.transition, self.duration, lengths, labels, self.start,
            backend=self.backend,
        )

    def loss(self, hidden: Tensor, lengths: Tensor, labels: Tensor) -> Tensor:
        """Normalised NLL: summed over the batch, divided by the number of positions."""
        return self.nll(hidden, lengths, labels).sum() / lengths.sum()

    @torch.no_grad()
    def decode(self, hidden: Tensor, lengths: Tensor) -> tuple[Tensor, list[list[tuple]]]:
        """Viterbi: labels (B, T) int64 (-100 past each length) and segments per sequence."""
        _, segments = api.viterbi(
            self.scores(hidden), self.transition, self.duration, lengths, self.start,
            backend=self.backend,
        )
        labels = np.full(hidden.shape[:2], IGNORE_LABEL, dtype=np.int64)
        for b, segs in enumerate(segments):  # one vectorised fill per sequence, not per segment
            spans = np.asarray(segs, dtype=np.int64)
            labels[b, : spans[-1, 1]] = np.repeat(spans[:, 2], spans[:, 1] - spans[:, 0])
        return torch.from_numpy(labels).to(hidden.device), segments

    def duration_log_pmf(self) -> Tensor:
        """The duration table normalised over lengths per label: log P(length | label), (K, C)."""
        return torch.log_softmax(self.duration.detach().float(), dim=0)
