"""Gene structure: the true segmentation of one sequence (which label where, and how long).

A sequence is a renewal process of genes separated by intergenic regions, started at the
beginning of an intergenic region and cut at ``seq_length``:

    intergenic, gene, intergenic, gene, ...            with, per gene (n exons ~ U[min, max]):
    C = 3:  exon, intron, exon, ..., intron, exon
    C = 5:  5'UTR, exon, intron, exon, ..., exon, 3'UTR

Every segment length is an independent draw from its class's :class:`DurationSpec`. The
segment that crosses ``seq_length`` is cut there (*censored*); its drawn length is kept.
Adjacent segments always have different labels, so segments are exactly the maximal runs of
the label sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semicrf.data.config import (
    CLASS_NAMES,
    EXON,
    INTERGENIC,
    INTRON,
    UTR3,
    UTR5,
    GeneratorConfig,
    class_names,
)
from semicrf.data.durations import sample_durations

# Per-segment role flags (bit field) used by the composition model.
FIRST_EXON = 1  # first coding exon of its gene (starts with the start codon)
LAST_EXON = 2  # last coding exon of its gene (ends with the stop codon)

_BUFFER = 32


@dataclass(frozen=True, eq=False)
class Structure:
    """The drawn segmentation of one sequence; arrays have one entry per segment.

    ``start``/``end`` (int64) are the *drawn* extents, so the last segment may end after
    ``seq_length`` (then it is censored at ``seq_length``); ``label`` int64; ``phase`` int64 is,
    for exons, the number of coding bases of the gene before this exon modulo 3 (0 otherwise);
    ``flags`` int64 holds FIRST_EXON / LAST_EXON bits.
    """

    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    phase: np.ndarray
    flags: np.ndarray
    seq_length: int

    @property
    def last_censored(self) -> bool:
        """True when the last segment was cut at ``seq_length``."""
        return bool(self.end[-1] > self.seq_length)

    @property
    def last_drawn_length(self) -> int:
        """Length the last segment was drawn with (before any cut)."""
        return int(self.end[-1] - self.start[-1])

    def segments(self) -> list[tuple[int, int, int]]:
        """Observed segments ``(start, end_exclusive, label)`` tiling ``[0, seq_length)``."""
        ends = np.minimum(self.end, self.seq_length)
        rows = zip(self.start.tolist(), ends.tolist(), self.label.tolist(), strict=True)
        return [(s, e, c) for s, e, c in rows]


class _DurationPool:
    """Buffered per-class draws (draw order is fixed, so the result depends only on rng)."""

    def __init__(self, config: GeneratorConfig, rng: np.random.Generator) -> None:
        self._config = config
        self._rng = rng
        self._buf: dict[int, list[int]] = {}

    def draw(self, label: int) -> int:
        buf = self._buf.get(label)
        if not buf:
            spec = self._config.durations[CLASS_NAMES[label]]
            buf = sample_durations(spec, self._config.bound_mode, self._rng, _BUFFER).tolist()
            buf.reverse()
            self._buf[label] = buf
        return buf.pop()


def sample_structure(
    config: GeneratorConfig, num_classes: int, seq_length: int, rng: np.random.Generator
) -> Structure:
    """Draw the segmentation of one sequence of ``seq_length`` bases (see module docstring)."""
    class_names(num_classes)
    if seq_length < 1:
        raise ValueError(f"seq_length must be >= 1, got {seq_length}")
    pool = _DurationPool(config, rng)
    lo, hi = config.exons_per_gene.min, config.exons_per_gene.max
    rows: list[tuple[int, int, int, int]] = []  # (length, label, phase, flags)
    pos = 0
    while pos < seq_length:
        d = pool.draw(INTERGENIC)
        rows.append((d, INTERGENIC, 0, 0))
        pos += d
        if pos >= seq_length:
            break
        n_exons = int(rng.integers(lo, hi + 1))
        gene: list[tuple[int, int, int, int]] = []
        if num_classes == 5:
            gene.append((pool.draw(UTR5), UTR5, 0, 0))
        coding = 0
        for k in range(n_exons):
            if k > 0:
                gene.append((pool.draw(INTRON), INTRON, 0, 0))
            d = pool.draw(EXON)
            flags = (FIRST_EXON if k == 0 else 0) | (LAST_EXON if k == n_exons - 1 else 0)
            gene.append((d, EXON, coding % 3, flags))
            coding += d
        if num_classes == 5:
            gene.append((pool.draw(UTR3), UTR3, 0, 0))
        for row in gene:
            rows.append(row)
            pos += row[0]
            if pos >= seq_length:
                break
    arr = np.array(rows, dtype=np.int64)
    end = np.cumsum(arr[:, 0])
    return Structure(
        start=end - arr[:, 0],
        end=end,
        label=arr[:, 1].copy(),
        phase=arr[:, 2].copy(),
        flags=arr[:, 3].copy(),
        seq_length=seq_length,
    )
