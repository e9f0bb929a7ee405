"""Random Semi-CRF problems for the tests (float64 unless told otherwise)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Case:
    scores: Tensor
    transition: Tensor
    duration: Tensor
    lengths: Tensor
    start: Tensor | None

    @property
    def args(self):
        return self.scores, self.transition, self.duration, self.lengths, self.start


def random_case(
    batch: int, length: int, max_len: int, labels: int, seed: int, *,
    with_start: bool = True, full_length: bool = False, dtype=torch.float64, scale: float = 1.0,
) -> Case:
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: scale * torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    lengths = (
        torch.full((batch,), length, dtype=torch.int64)
        if full_length
        else torch.randint(1, length + 1, (batch,), generator=gen)
    )
    lengths[0] = length  # the longest sequence always fills T
    return Case(
        scores=rnd(batch, length, labels),
        transition=rnd(labels, labels),
        duration=rnd(max_len, labels),
        lengths=lengths,
        start=rnd(labels) if with_start else None,
    )
