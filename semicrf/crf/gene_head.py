"""``GeneHead``: a Semi-CRF head over the gene grammar's frame-aware internal states.

The encoder's states give, per position, the emission columns of
:data:`semicrf.gene_grammar.EMISSION_COLUMNS` (an exon of frame f reads the codon column of
its codon position) and one sensor score per boundary kind (gene start, donor, acceptor,
gene end, with UTRs transcript start / end): a convolution over the encoder states of the
site window ``[t - SENSOR_LEFT, t + SENSOR_RIGHT)`` around a boundary at t (the generator's
and real splice sites span about that: exon rows and GT...AG, the poly-pyrimidine tract,
start and stop codons). The layer scores the
internal states in runs semantics with a per-position transition: a learned (S, S) table,
plus the sensor of the boundary's kind, -inf where the grammar forbids (semicrf.gene_grammar).
Durations and the geometric tail are learned per output label (the exon states share the
exon column, the intron states the intron column), exactly as :class:`SemiCRFHead` learns
them; with K = 1 the head is the linear-chain (geometric) baseline over the same states.

Training labels are output labels. Where the frames follow from them (a window that starts
outside a gene) the gold internal labelling is closed form; otherwise (a window cut from
inside a gene) the NLL is ``log Z - log Z(y)`` with Z(y) the partition restricted to the
internal labellings that map to y. A window the grammar cannot produce (Z(y) = 0) is left out
of the loss and counted (:attr:`GeneHead.skipped_windows`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional

from semicrf.crf import api, survival
from semicrf.crf.head import SemiCRFHead
from semicrf.crf.likelihood import label_nll
from semicrf.crf.scoring import label_runs as run_tensors
from semicrf.crf.streaming import NEG
from semicrf.gene_grammar import GeneGrammar

# The sensors' window around a boundary at t (the first base of the new run): positions
# [t - SENSOR_LEFT, t + SENSOR_RIGHT) of the encoder states.
SENSOR_LEFT, SENSOR_RIGHT = 12, 6


class GeneHead(SemiCRFHead):
    """Args as :class:`SemiCRFHead` (always runs semantics), plus ``grammar`` (its
    ``num_classes`` are the output labels) and ``start_anywhere`` (windows may start in any
    state, as windows cut from real loci do; generated windows start intergenic).

    Shapes: hidden (B, T, H), lengths (B,), labels (B, T) output labels; internal scores
    (B, T, S), transitions (B, T, S, S).
    """

    def __init__(
        self,
        hidden_dim: int,
        grammar: GeneGrammar,
        max_duration: int,
        duration: Literal["learned", "uniform"] = "learned",
        backend: str = "auto",
        *,
        duration_form: Literal["table", "smooth"] = "table",
        censor: tuple[bool, bool] = (False, True),
        start_anywhere: bool = False,
    ) -> None:
        super().__init__(hidden_dim, grammar.num_classes, max_duration, duration, backend,
                         semantics="runs", duration_form=duration_form, censor=censor)
        self.grammar, self.start_anywhere = grammar, start_anywhere
        states = grammar.num_states
        self.projection = nn.Linear(hidden_dim, grammar.num_emission_columns)
        self.sensor = nn.Conv1d(hidden_dim, grammar.num_boundary_kinds - 1,
                                SENSOR_LEFT + SENSOR_RIGHT)
        self.transition = nn.Parameter(torch.zeros(states, states))
        self.start = nn.Parameter(torch.zeros(states))
        self.register_buffer("start_allowed", grammar.start_allowed(start_anywhere),
                             persistent=False)  # derived from the grammar, not a parameter
        #: windows left out of the last ``nll`` call because the grammar cannot produce them
        self.skipped_windows = 0

    ABLATION_KEEPS = ("projection.", "sensor.", "transition", "start")

    def _uniform_twin(self) -> GeneHead:
        return GeneHead(self.projection.in_features, self.grammar, self.max_duration, "uniform",
                        self.backend, start_anywhere=self.start_anywhere)

    # ------------------------------------------------------------------ the internal model
    def scores(self, hidden: Tensor) -> Tensor:
        """Internal emission scores (B, T, S)."""
        columns = self.projection(hidden)
        batch, length, _ = columns.shape
        index = self.grammar.emission_index(length, hidden.device)
        return columns.gather(2, index.unsqueeze(0).expand(batch, length, -1))

    def state_transition(self, hidden: Tensor) -> Tensor:
        """Per-position transitions (B, T, S, S): table + sensors, -inf off the grammar.
        The encoder states are zero past each length and the window is zero-padded."""
        padded = functional.pad(hidden.transpose(1, 2), (SENSOR_LEFT, SENSOR_RIGHT - 1))
        sensors = self.sensor(padded).transpose(1, 2)  # (B, T, kinds - 1)
        return self.grammar.per_position_transition(self.transition, sensors, hidden.shape[1])

    def state_start(self) -> Tensor:
        """(S,) start scores, -inf for states a window cannot start in."""
        return self.start.masked_fill(~self.start_allowed, float("-inf"))

    def _state_keywords(self, lengths: Tensor, censored: Tensor | None) -> dict:
        tail = self.tail()
        return dict(semantics="runs", tail=self.grammar.expand_by_label(tail),
                    censored=self._censored(lengths, censored), backend=self.backend)

    def _model(self, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        durations = self.grammar.expand_by_label(self.duration_scores())
        return self.scores(hidden), self.state_transition(hidden), durations, self.state_start()

    # ------------------------------------------------------------------ training
    def nll(self, hidden: Tensor, lengths: Tensor, labels: Tensor,
            censored: Tensor | None = None) -> Tensor:
        """-log P(output labels) per sequence (B,), >= 0; 0 for a window the grammar cannot
        produce (left out, counted in :attr:`skipped_windows`). NaN for non-finite scores."""
        return self._nll(hidden, lengths, labels, censored)[0]

    def _nll(self, hidden: Tensor, lengths: Tensor, labels: Tensor,
             censored: Tensor | None) -> tuple[Tensor, Tensor]:
        """(NLL (B,), possible (B,) bool: the grammar can produce the window's labels)."""
        scores, trans, durations, start = self._model(hidden)
        self.skipped_windows = 0
        every = torch.ones_like(lengths, dtype=torch.bool)
        if not bool(torch.isfinite(scores).all()):
            return scores.new_full(lengths.shape, float("nan")), every
        keywords = self._state_keywords(lengths, censored)
        internal = None if self.start_anywhere else self.grammar.internal_labels(labels, lengths)
        if internal is not None:  # frames known: the gold internal labelling, closed form
            return label_nll(scores, trans, durations, lengths, internal, start, **keywords), every
        log_z = api.log_partition(scores, trans, durations, lengths, start, **keywords)
        log_z_gold, _ = self._observed_chain(scores, trans, durations, start, labels, lengths,
                                             keywords["tail"], keywords["censored"])
        possible = log_z_gold > NEG / 2
        self.skipped_windows = int((~possible).sum())
        nll = torch.where(possible, log_z - log_z_gold.masked_fill(~possible, 0.0), 0.0)
        return nll, possible

    def _observed_chain(self, scores: Tensor, trans: Tensor, durations: Tensor,
                        start: Tensor, labels: Tensor, lengths: Tensor, tail: Tensor,
                        censored: Tensor | None, best: bool = False
                        ) -> tuple[Tensor, list[list[tuple[int, int, int]]] | None]:
        """log Z(y) (B,): the sum over internal labellings whose output labels are ``labels``
        (``best``: the max, and the best such labelling's internal runs per sequence).

        Their runs are the runs of y; only each run's state (its frame) is free. So Z(y) is
        a chain over the runs of y: run r in state c scores its emissions, its duration (the
        survival when censored) and the transition into it at its start (the first run:
        start), states of other labels NEG. Values <= NEG / 2: the grammar cannot produce y.
        """
        seq, begin, end, label = run_tensors(labels, lengths)
        batch, _, states = scores.shape
        f64 = torch.float64
        prefix = torch.cat([scores.new_zeros(batch, 1, states, dtype=f64),
                            torch.cumsum(scores.to(f64), dim=1)], dim=1)
        run_len = end - begin
        emission = prefix[seq, end] - prefix[seq, begin]  # (n, S)
        dur64, tail64 = durations.to(f64).clamp(min=NEG), tail.to(f64)
        length_score = survival.run_score(dur64, tail64, run_len)
        if censored is not None:
            first = (begin == 0) & censored[seq, 0]
            last = (end == lengths[seq]) & censored[seq, 1]
            cut = survival.log_survival(dur64, tail64, run_len.clamp(min=1))
            both = survival.log_survival2(dur64, tail64, run_len.clamp(min=1))
            length_score = torch.where((first ^ last).unsqueeze(1), cut, length_score)
            length_score = torch.where((first & last).unsqueeze(1), both, length_score)
        fits = self.grammar.state_label.to(labels.device).view(1, -1) == label.view(-1, 1)
        run_score = (emission + length_score).masked_fill(~fits, NEG)  # (n, S)
        into = trans.to(f64).clamp(min=NEG)[seq, begin]  # (n, S, S), row 0 unused
        order = torch.cumsum(torch.ones_like(seq), 0) - 1
        first_run = torch.zeros(batch, dtype=torch.int64, device=seq.device)
        first_run.scatter_reduce_(0, seq, order, reduce="amin", include_self=False)
        rank = order - first_run[seq]  # index of each run inside its sequence
        count = torch.bincount(seq, minlength=batch)
        alpha = torch.full((batch, states), NEG, dtype=f64, device=scores.device)
        came_from = torch.zeros(seq.shape[0], states, dtype=torch.int64, device=seq.device)
        for r in range(int(count.max())):
            pick = rank == r
            b = seq[pick]
            if r == 0:
                step = start.to(f64).clamp(min=NEG)[None] + run_score[pick]
            elif best:
                step, came_from[pick] = torch.max(alpha[b].unsqueeze(2) + into[pick], dim=1)
                step = step + run_score[pick]
            else:
                step = torch.logsumexp(alpha[b].unsqueeze(2) + into[pick], dim=1) + run_score[pick]
            alpha = alpha.index_copy(0, b, step)
        if not best:
            return torch.logsumexp(alpha, dim=1), None
        top, state = alpha.max(dim=1)
        paths = []
        for b in range(batch):  # trace the runs of sequence b back from its last one
            rows = (seq == b).nonzero().flatten().tolist()
            current, runs = int(state[b]), []
            for row in reversed(rows):
                runs.append((int(begin[row]), int(end[row]), current))
                current = int(came_from[row, current])
            paths.append(runs[::-1])
        return top, paths

    @torch.no_grad()
    def observed_states(self, hidden: Tensor, lengths: Tensor, labels: Tensor,
                        censored: Tensor | None = None) -> list[list[tuple[int, int, int]] | None]:
        """The best internal labelling whose output labels are ``labels`` (B, T), as runs
        (start, end_exclusive, state), per sequence: its frames (latent where a window starts
        inside a gene); None where the grammar cannot produce the labels."""
        scores, trans, durations, start = self._model(hidden)
        keywords = self._state_keywords(lengths, censored)
        top, paths = self._observed_chain(scores, trans, durations, start, labels, lengths,
                                          keywords["tail"], keywords["censored"], best=True)
        return [path if float(score) > NEG / 2 else None for score, path in zip(top, paths)]

    def loss(self, hidden: Tensor, lengths: Tensor, labels: Tensor,
             censored: Tensor | None = None) -> Tensor:
        """Normalised NLL over the windows the grammar can produce (0 if there is none)."""
        nll, possible = self._nll(hidden, lengths, labels, censored)
        return nll.sum() / lengths.masked_fill(~possible, 0).sum().clamp(min=1)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode_states(self, hidden: Tensor, lengths: Tensor,
                      censored: Tensor | None = None) -> list[list[tuple[int, int, int]]]:
        """The best internal labelling per sequence as runs (start, end_exclusive, state)."""
        scores, trans, durations, start = self._model(hidden)
        _, runs = api.viterbi(scores, trans, durations, lengths, start,
                              **self._state_keywords(lengths, censored))
        return runs

    @torch.no_grad()
    def viterbi_segments(self, hidden: Tensor, lengths: Tensor,
                         censored: Tensor | None = None) -> list[list[tuple[int, int, int]]]:
        """The output runs of the best internal labelling: always a gene structure the grammar
        allows (``decode`` is inherited; its "posterior" decoder takes the output label of
        highest marginal at each position and may break the grammar)."""
        return [self.grammar.output_runs(runs)
                for runs in self.decode_states(hidden, lengths, censored)]

    @torch.no_grad()
    def marginals(self, hidden: Tensor, lengths: Tensor, censored: Tensor | None = None) -> Tensor:
        """Posterior output-label marginals (B, T, C): summed over each label's states."""
        scores, trans, durations, start = self._model(hidden)
        post = api.marginals(scores, trans, durations, lengths, start,
                             **self._state_keywords(lengths, censored))
        return self.grammar.collapse_by_label(post)

    @torch.no_grad()
    def posterior_durations(self, hidden: Tensor, lengths: Tensor,
                            censored: Tensor | None = None) -> Tensor:
        """Expected number of complete runs of each length <= K per output label (B, K, C)
        (internal runs are output runs, so the states of a label add up)."""
        scores, trans, durations, start = self._model(hidden)
        keywords = self._state_keywords(lengths, censored)
        keywords.pop("backend")
        counts = api.posterior_durations(scores, trans, durations, lengths, start, **keywords)
        return self.grammar.collapse_by_label(counts)
