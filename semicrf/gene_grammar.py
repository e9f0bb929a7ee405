"""The gene grammar: frame-aware internal states over the output labels (one home for the
head, the data, the Bayes-ceiling oracle and ``predict``).

Internal states (S = 7 with 3 output classes, 9 with 5)::

    0 intergenic | 1, 2, 3 exon E_f, frame f = 0, 1, 2 | 4, 5, 6 intron I_p, p = 0, 1, 2
    | 7 utr5 | 8 utr3                                                    (5 classes only)

Base t (window-local) of an exon of frame f is codon position ``(t - f) mod 3``; an intron
carries p, the codon position of the next coding base. Runs of internal states are exactly
the runs of the output labels (no two states of one label may follow each other). At a
boundary position t (the first base of the new run):

- a gene starts (intergenic -> E_f with 3 classes, utr5 -> E_f with 5) only where
  ``f = t mod 3``: the first coding base is codon position 0;
- donor E_f -> I_p needs ``p = (t - f) mod 3``; acceptor I_p -> E_f needs ``(t - f) mod 3 = p``;
- a gene ends (E_f -> intergenic with 3 classes, E_f -> utr3 with 5) anywhere, or with
  ``whole_codons`` (real genes: a CDS is a multiple of 3) only where ``(t - f) mod 3 = 0``;
- with 5 classes: intergenic -> utr5 (transcript start), utr3 -> intergenic (transcript end).

The rules depend on t only through t mod 3: ``allowed`` is a (3, S, S) mask
[t mod 3, prev, next]. Each allowed boundary has a kind (``boundary_kind``: gene start,
donor, acceptor, gene end, transcript start / end), whose sensor score a model adds there.
In the generator an exon starting at s with its ``phase`` (coding bases before it, mod 3)
has frame ``f = (s - phase) mod 3``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from semicrf.labels import EXON, INTERGENIC, INTRON, UTR3, UTR5, label_runs

INTERGENIC_STATE = 0
EXON_STATES = (1, 2, 3)  # frame f = 0, 1, 2
INTRON_STATES = (4, 5, 6)  # phase p = 0, 1, 2
UTR5_STATE, UTR3_STATE = 7, 8

#: Boundary kinds (index 0: no boundary); a model has one sensor per kind >= 1.
BOUNDARY_KINDS = ("none", "gene_start", "donor", "acceptor", "gene_end", "transcript_start",
                  "transcript_end")

#: Emission columns a gene model produces per position; exon states read the codon column of
#: their codon position (:meth:`GeneGrammar.emission_index`).
EMISSION_COLUMNS = ("intergenic", "intron", "codon0", "codon1", "codon2", "utr5", "utr3")

Run = tuple[int, int, int]


class GeneGrammar:
    """The grammar for ``num_classes`` = 3 (intergenic, exon, intron) or 5 (+ utr5, utr3).

    ``whole_codons``: a gene may end only after a whole number of codons (real genes); the
    benchmark's generator draws exon lengths independently, so it is off there.
    """

    def __init__(self, num_classes: int = 3, whole_codons: bool = False) -> None:
        if num_classes not in (3, 5):
            raise ValueError(f"the gene grammar needs num_classes 3 or 5, got {num_classes}")
        self.num_classes, self.whole_codons = num_classes, whole_codons
        self.num_states = 7 if num_classes == 3 else 9
        names = ["intergenic", "exon_f0", "exon_f1", "exon_f2", "intron_p0", "intron_p1",
                 "intron_p2", "utr5", "utr3"]
        self.state_names: tuple[str, ...] = tuple(names[: self.num_states])
        labels = [INTERGENIC, EXON, EXON, EXON, INTRON, INTRON, INTRON, UTR5, UTR3]
        self.state_label = torch.tensor(labels[: self.num_states], dtype=torch.int64)
        self.num_boundary_kinds = 5 if num_classes == 3 else 7
        self.allowed, self.boundary_kind = self._rules()
        self.num_emission_columns = 5 if num_classes == 3 else 7

    def _rules(self) -> tuple[Tensor, Tensor]:
        size = self.num_states
        allowed = torch.zeros(3, size, size, dtype=torch.bool)
        kind = torch.zeros(size, size, dtype=torch.int64)
        before_gene = INTERGENIC_STATE if self.num_classes == 3 else UTR5_STATE
        after_gene = INTERGENIC_STATE if self.num_classes == 3 else UTR3_STATE
        for r in range(3):  # r = t mod 3
            for f, exon in enumerate(EXON_STATES):
                if f == r:
                    allowed[r, before_gene, exon] = True
                if not self.whole_codons or (r - f) % 3 == 0:
                    allowed[r, exon, after_gene] = True
                for p, intron in enumerate(INTRON_STATES):
                    if p == (r - f) % 3:
                        allowed[r, exon, intron] = True
                        allowed[r, intron, exon] = True
        for exon in EXON_STATES:
            kind[before_gene, exon] = BOUNDARY_KINDS.index("gene_start")
            kind[exon, after_gene] = BOUNDARY_KINDS.index("gene_end")
            for intron in INTRON_STATES:
                kind[exon, intron] = BOUNDARY_KINDS.index("donor")
                kind[intron, exon] = BOUNDARY_KINDS.index("acceptor")
        if self.num_classes == 5:
            allowed[:, INTERGENIC_STATE, UTR5_STATE] = True
            allowed[:, UTR3_STATE, INTERGENIC_STATE] = True
            kind[INTERGENIC_STATE, UTR5_STATE] = BOUNDARY_KINDS.index("transcript_start")
            kind[UTR3_STATE, INTERGENIC_STATE] = BOUNDARY_KINDS.index("transcript_end")
        return allowed, kind

    def start_allowed(self, anywhere: bool) -> Tensor:
        """(S,) bool: states a window may start in. Generated windows start at the beginning
        of an intergenic region (``anywhere=False``); windows cut from real loci anywhere."""
        if anywhere:
            return torch.ones(self.num_states, dtype=torch.bool)
        return torch.arange(self.num_states) == INTERGENIC_STATE

    def transition_mask(self, length: int, device: torch.device | str = "cpu") -> Tensor:
        """(T, S, S) bool: ``allowed`` at every position, row t = t mod 3."""
        return self.allowed.to(device)[torch.arange(length, device=device) % 3]

    def per_position_transition(self, table: Tensor, sensors: Tensor | None, length: int) -> Tensor:
        """The layer's (B, T, S, S) transition: ``table`` (S, S) plus, at each allowed
        boundary, the sensor score of its kind at t (``sensors`` (B, T, num_boundary_kinds - 1)
        or None); -inf where the grammar forbids. B is 1 without sensors."""
        device = table.device
        mask = self.transition_mask(length, device)  # (T, S, S)
        scores = table.unsqueeze(0).unsqueeze(0)  # (1, 1, S, S)
        if sensors is not None:
            padded = torch.cat([sensors.new_zeros(sensors.shape[:2] + (1,)), sensors], dim=2)
            kind = self.boundary_kind.to(device).view(-1)  # (S * S,)
            picked = padded[:, :, kind].view(sensors.shape[:2] + (self.num_states, self.num_states))
            scores = scores + picked
        scores = scores.expand(scores.shape[0], length, self.num_states, self.num_states)
        return scores.masked_fill(~mask, float("-inf"))

    def emission_index(self, length: int, device: torch.device | str = "cpu") -> Tensor:
        """(T, S) long: the emission column (:data:`EMISSION_COLUMNS`) state s reads at t; an
        exon of frame f reads the codon column of codon position (t - f) mod 3."""
        t = torch.arange(length, device=device).view(length, 1)
        columns = [torch.zeros_like(t)]
        columns += [2 + (t - f) % 3 for f in range(3)]
        columns += [torch.ones_like(t)] * 3
        if self.num_classes == 5:
            columns += [torch.full_like(t, 5), torch.full_like(t, 6)]
        return torch.cat(columns, dim=1)

    def shift_frames(self, states: np.ndarray, offset: int) -> np.ndarray:
        """Internal states (int array) of a window that starts at ``offset`` of a longer
        sequence, in the sequence's coordinates: an exon of window frame f has frame
        ``(f + offset) mod 3`` there; other states (an intron's codon position) stay."""
        out = np.array(states, dtype=np.int64, copy=True)
        exon = (out >= EXON_STATES[0]) & (out <= EXON_STATES[-1])
        out[exon] = EXON_STATES[0] + (out[exon] - EXON_STATES[0] + offset) % 3
        return out

    def broken_boundaries(self, states: np.ndarray) -> np.ndarray:
        """Positions t (int64) where internal states (T,) change in a way the grammar forbids
        at t (``allowed[t mod 3, states[t - 1], states[t]]`` False)."""
        states = np.asarray(states, dtype=np.int64)
        at = np.flatnonzero(states[1:] != states[:-1]) + 1
        ok = self.allowed.numpy()[at % 3, states[at - 1], states[at]]
        return at[~ok]

    def expand_by_label(self, x: Tensor) -> Tensor:
        """(..., C) -> (..., S): each state takes its output label's column (durations tied
        by output class; gradients sum back over the states of a label)."""
        return x.index_select(-1, self.state_label.to(x.device))

    def collapse_by_label(self, x: Tensor) -> Tensor:
        """(..., S) -> (..., C): the sum over the states of each output label (marginals,
        posterior run-length counts)."""
        out = x.new_zeros(x.shape[:-1] + (self.num_classes,))
        return out.index_add_(-1, self.state_label.to(x.device), x)

    def output_runs(self, runs: Sequence[Run]) -> list[Run]:
        """Internal runs (start, end, state) -> output runs (start, end, label)."""
        labels = self.state_label.tolist()
        return [(s, e, labels[state]) for s, e, state in runs]

    def frame_of_exon(self, start: int, phase: int) -> int:
        """Frame of an exon starting at ``start`` whose gene has ``phase`` coding bases
        (mod 3) before it (the generator's ``phase``)."""
        return (start - phase) % 3

    def internal_runs(self, runs: Sequence[Run], first_state: int | None = None) -> list[Run] | None:
        """The internal runs of output runs (start, end, label) whose frames follow from the
        labels: the first run's state is ``first_state`` (None: the state of its label when
        that label has one state; a window starting inside a gene has a latent frame and
        gives None). Returns None when the labels do not fit the grammar (or the frame is
        latent): such a window needs the latent loss or is left out."""
        out: list[Run] = []
        frame: int | None = None  # frame of the last exon run
        phase: int | None = None  # phase carried by the last intron run
        for i, (s, e, label) in enumerate(runs):
            if label == EXON:
                if i == 0:
                    if first_state is None:
                        return None
                    state = first_state
                elif phase is not None:
                    state = EXON_STATES[(s - phase) % 3]
                else:  # after intergenic / utr5: a gene starts at codon position 0
                    state = EXON_STATES[s % 3]
                frame = state - EXON_STATES[0]
            elif label == INTRON:
                if i == 0:
                    if first_state is None:
                        return None
                    state = first_state
                elif frame is None:
                    return None
                else:
                    state = INTRON_STATES[(s - frame) % 3]
                phase = state - INTRON_STATES[0]
            else:
                state = {INTERGENIC: INTERGENIC_STATE, UTR5: UTR5_STATE, UTR3: UTR3_STATE}[label]
                if i == 0 and first_state is not None and first_state != state:
                    return None
                frame = phase = None
            out.append((s, e, state))
        return out if self.admits(out, anywhere=first_state is not None) else None

    def fits(self, runs: Sequence[Run], anywhere: bool = False) -> bool:
        """True when some internal labelling with these output runs (start, end, label)
        follows the grammar: with ``anywhere`` the first run may take any state of its label
        (a latent frame), otherwise the frames follow from the labels. A window that does not
        fit has no admissible labelling (a model leaves it out of its loss)."""
        if not anywhere:
            return self.internal_runs(runs) is not None
        if not runs:
            return False
        states = (self.state_label == runs[0][2]).nonzero().flatten().tolist()
        return any(self.internal_runs(runs, first_state=state) is not None for state in states)

    def admits(self, runs: Sequence[Run], anywhere: bool = False) -> bool:
        """True when internal runs (start, end, state) follow the grammar (first state
        allowed, every boundary allowed at its position, states valid)."""
        if not runs or not 0 <= runs[0][2] < self.num_states:
            return False
        if not bool(self.start_allowed(anywhere)[runs[0][2]]):
            return False
        for (_, _, prev), (s, _, state) in zip(runs, runs[1:]):
            if not 0 <= state < self.num_states or not bool(self.allowed[s % 3, prev, state]):
                return False
        return True

    def internal_labels(self, labels: Tensor, lengths: Tensor) -> Tensor | None:
        """(B, T) internal states of output labels (B, T) whose windows start outside genes
        (frames follow from the labels), -100 past each length; None if any window starts
        inside a gene or breaks the grammar (then a model uses the latent loss)."""
        out = torch.full_like(labels, -100)
        for b in range(labels.shape[0]):
            n = int(lengths[b])
            runs = self.internal_runs(label_runs(labels[b, :n].cpu()))
            if runs is None:
                return None
            for s, e, state in runs:
                out[b, s:e] = state
        return out
