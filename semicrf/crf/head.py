"""``SemiCRFHead``: the structured output layer put on top of an encoder."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from semicrf.crf import api
from semicrf.crf.likelihood import label_nll
from semicrf.crf.survival import log_survival
from semicrf.labels import PAD_LABEL, label_runs, length_mask

DURATION_FORMS = ("table", "smooth")
# Decoders: "viterbi" = the best labelling (MAP); "posterior" = maximum expected position
# accuracy, the label with the highest exact posterior marginal at each position.
DECODERS = ("viterbi", "posterior")
# Smooth duration form: Gaussian bumps in log-length, this many per label (AUGUSTUS smooths its
# length histograms for the same reason: a free K-entry table is too noisy to learn).
SMOOTH_BASIS_SIZE = 24
# The learned tail is -(softplus(raw) + TAIL_MARGIN): a continuation probability below one.
TAIL_MARGIN = 1e-6


def smooth_basis(max_duration: int, size: int = SMOOTH_BASIS_SIZE) -> Tensor:
    """(K, M) Gaussian bumps over log-length, centres evenly spaced in [0, log K], width one
    spacing; a duration column is ``basis @ weights``."""
    size = max(1, min(size, max_duration))
    log_len = torch.log(torch.arange(1, max_duration + 1, dtype=torch.float64))
    top = math.log(max_duration)
    centres = torch.linspace(0.0, top, size, dtype=torch.float64)
    width = top / max(size - 1, 1) if top > 0 else 1.0
    return torch.exp(-0.5 * ((log_len.unsqueeze(1) - centres) / width) ** 2).float()


class SemiCRFHead(nn.Module):
    """Projects hidden states to emission scores and scores labellings with a Semi-CRF.

    Args:
        hidden_dim: H, the encoder's output size.
        num_labels: C.
        max_duration: K, the longest run with its own duration score (beyond K: the tail).
        duration: ``"learned"`` (trained duration scores and tail) or ``"uniform"`` (table
            and tail fixed at zero: no length information at all; in runs semantics that is
            a geometric length model, the emission bias times the length, as in a
            linear-chain CRF or an HMM).
        semantics: ``"runs"`` (default: one segmentation per labelling, durations of whole
            label runs, a learned geometric tail beyond K) or ``"segments"`` (the contract's
            original semantics: label runs longer than K are sums over their splits).
        duration_form: ``"table"`` (a free (K, C) table) or ``"smooth"`` (per label, a
            combination of :data:`SMOOTH_BASIS_SIZE` Gaussian bumps in log-length). In runs
            semantics the learned scores are normalised per label (:meth:`duration_scores`).
        censor: default censored flags (first run, last run) of every sequence, used when
            ``nll``/``decode`` get none (runs semantics with learned durations only). The
            benchmark's generator starts every sequence at the beginning of an intergenic
            region and cuts it at T, so the default is (False, True).
        backend: passed to the Semi-CRF functions ("auto", "reference", "triton").

    Shapes: hidden (B, T, H) float, lengths (B,) int, labels (B, T) int with -100 (or any
    value) past each length, censored (B, 2) bool.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_labels: int,
        max_duration: int,
        duration: Literal["learned", "uniform"] = "learned",
        backend: str = "auto",
        *,
        semantics: Literal["runs", "segments"] = "runs",
        duration_form: Literal["table", "smooth"] = "table",
        censor: tuple[bool, bool] = (False, True),
    ) -> None:
        super().__init__()
        if max_duration < 1:
            raise ValueError(f"max_duration (K) must be >= 1, got {max_duration}")
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        if duration not in ("learned", "uniform"):
            raise ValueError(f"duration must be 'learned' or 'uniform', got {duration!r}")
        if semantics not in ("runs", "segments"):
            raise ValueError(f"semantics must be 'runs' or 'segments', got {semantics!r}")
        if duration_form not in DURATION_FORMS:
            raise ValueError(f"duration_form must be one of {DURATION_FORMS}, got {duration_form!r}")
        self.num_labels, self.max_duration = num_labels, max_duration
        self.duration_mode, self.backend, self.semantics = duration, backend, semantics
        self.duration_form = duration_form
        self.censor = tuple(bool(x) for x in censor)
        self.projection = nn.Linear(hidden_dim, num_labels)
        self.transition = nn.Parameter(torch.zeros(num_labels, num_labels))
        self.start = nn.Parameter(torch.zeros(num_labels))
        self.learned = duration == "learned"
        if not self.learned:
            self.register_buffer("duration", torch.zeros(max_duration, num_labels))
        elif duration_form == "smooth":
            self.register_buffer("basis", smooth_basis(max_duration))
            self.duration_weights = nn.Parameter(torch.zeros(self.basis.shape[1], num_labels))
        else:
            self.duration = nn.Parameter(torch.zeros(max_duration, num_labels))
        if self.learned and semantics == "runs":
            # tail about -1/1000 at the start: a mean run length of ~1000 beyond K
            self.tail_raw = nn.Parameter(torch.full((num_labels,), math.log(math.expm1(1e-3))))

    def duration_scores(self) -> Tensor:
        """The (K, C) duration scores the CRF uses (row l - 1 = length l).

        Learned, runs semantics: a log-pmf per label over all run lengths, the table (or the
        smooth columns) minus ``log(sum_{l <= K} exp(raw(l)) + tail mass beyond K)``, so a run
        cut by the window (scored by its log-survival) scores at most 0, exactly 0 at length 1.
        This is a reparametrisation (the per-label constant trades with the transitions and
        start), not a new model family; it fixes where training starts and what a censored
        run costs (at initialisation, unnormalised zero scores gave a one-base censored run a
        bonus of about log(K + 1000)).
        """
        if not self.learned:
            return self.duration
        raw = self.basis @ self.duration_weights if self.duration_form == "smooth" else self.duration
        if self.semantics != "runs":
            return raw
        one = torch.ones(1, dtype=torch.int64, device=raw.device)
        return raw - log_survival(raw, self.tail(), one)

    def tail(self) -> Tensor | None:
        """(C,) geometric tail beyond K, always < 0 (runs, learned); zeros (uniform); None
        (segments semantics)."""
        if self.semantics != "runs":
            return None
        if not self.learned:
            return self.start.new_zeros(self.num_labels)
        return -(functional.softplus(self.tail_raw) + TAIL_MARGIN)

    def _censored(self, lengths: Tensor, censored: Tensor | None) -> Tensor | None:
        if self.semantics != "runs" or not self.learned:
            return None  # no length distribution: a censored run scores as an uncensored one
        if censored is None:
            censored = torch.tensor(self.censor, device=lengths.device).expand(lengths.shape[0], 2)
        return censored if bool(censored.any()) else None

    def scores(self, hidden: Tensor) -> Tensor:
        """Emission scores (B, T, C)."""
        return self.projection(hidden)

    def _keywords(self, lengths: Tensor, censored: Tensor | None) -> dict:
        return dict(semantics=self.semantics, tail=self.tail(),
                    censored=self._censored(lengths, censored), backend=self.backend)

    def nll(self, hidden: Tensor, lengths: Tensor, labels: Tensor,
            censored: Tensor | None = None) -> Tensor:
        """Negative log-likelihood of the labels per sequence (B,), always >= 0.

        Non-finite emission scores give NaN (so a training loop can stop with a message)
        instead of the ``ValueError`` the functional API raises for them.
        """
        scores = self.scores(hidden)
        if not bool(torch.isfinite(scores).all()):
            return scores.new_full(lengths.shape, float("nan"))
        return label_nll(scores, self.transition, self.duration_scores(), lengths, labels,
                         self.start, **self._keywords(lengths, censored))

    def loss(self, hidden: Tensor, lengths: Tensor, labels: Tensor,
             censored: Tensor | None = None) -> Tensor:
        """Normalised NLL: summed over the batch, divided by the number of positions."""
        return self.nll(hidden, lengths, labels, censored).sum() / lengths.sum()

    @torch.no_grad()
    def decode(self, hidden: Tensor, lengths: Tensor, censored: Tensor | None = None,
               decoder: str = "viterbi") -> tuple[Tensor, list[list[tuple]]]:
        """Labels (B, T) int64 (-100 past each length) and segments per sequence.

        ``decoder="viterbi"``: the best labelling (runs) or segmentation (segments).
        ``decoder="posterior"``: maximum expected accuracy for per-position accuracy, i.e. at
        each position the label of highest posterior marginal (one forward and one backward
        sweep); its segments are the maximal runs of those labels.
        """
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if decoder == "posterior":
            best = self.marginals(hidden, lengths, censored).argmax(-1)
            labels = best.masked_fill(~length_mask(lengths, best.shape[1]), PAD_LABEL)
            return labels, [label_runs(row) for row in labels.cpu()]
        segments = self.viterbi_segments(hidden, lengths, censored)
        labels = np.full(hidden.shape[:2], PAD_LABEL, dtype=np.int64)
        for b, segs in enumerate(segments):  # one vectorised fill per sequence, not per segment
            spans = np.asarray(segs, dtype=np.int64)
            labels[b, : spans[-1, 1]] = np.repeat(spans[:, 2], spans[:, 1] - spans[:, 0])
        return torch.from_numpy(labels).to(hidden.device), segments

    @torch.no_grad()
    def viterbi_segments(self, hidden: Tensor, lengths: Tensor,
                         censored: Tensor | None = None) -> list[list[tuple[int, int, int]]]:
        """The Viterbi segments (start, end_exclusive, label) of each sequence."""
        _, segments = api.viterbi(
            self.scores(hidden), self.transition, self.duration_scores(), lengths, self.start,
            **self._keywords(lengths, censored),
        )
        return segments

    @torch.no_grad()
    def marginals(self, hidden: Tensor, lengths: Tensor, censored: Tensor | None = None) -> Tensor:
        """Posterior label marginals P(y_t = c), (B, T, C) (see :func:`semicrf.marginals`)."""
        return api.marginals(self.scores(hidden), self.transition, self.duration_scores(),
                             lengths, self.start, **self._keywords(lengths, censored))

    @torch.no_grad()
    def posterior_durations(self, hidden: Tensor, lengths: Tensor,
                            censored: Tensor | None = None) -> Tensor:
        """Expected number of complete runs of each length <= K and label, (B, K, C)
        (runs semantics; see :func:`semicrf.crf.api.posterior_durations`)."""
        keywords = self._keywords(lengths, censored)
        keywords.pop("backend")
        return api.posterior_durations(self.scores(hidden), self.transition,
                                       self.duration_scores(), lengths, self.start, **keywords)

    #: Parameters that the duration ablation keeps (everything but durations and tail).
    ABLATION_KEEPS: tuple[str, ...] = ("projection.", "transition", "start")

    def _uniform_twin(self) -> SemiCRFHead:
        return SemiCRFHead(self.projection.in_features, self.num_labels, self.max_duration,
                           duration="uniform", backend=self.backend, semantics=self.semantics)

    def without_durations(self) -> SemiCRFHead:
        """A copy of this head with the duration scores and tail replaced by zeros (the
        uniform, geometric length model, no censoring): the causal ablation."""
        if not self.learned:
            raise ValueError("this head has no learned duration model to ablate")
        uniform = self._uniform_twin()
        uniform.load_state_dict({k: v for k, v in self.state_dict().items()
                                 if k.startswith(self.ABLATION_KEEPS)}, strict=False)
        return uniform.to(self.start.device)

    def duration_log_pmf(self) -> Tensor:
        """The duration scores normalised over lengths 1..K per label, (K, C). Identified only up
        to a linear tilt (the emission bias trades with it): compare it with a reference after
        profiling the tilt (:func:`semicrf.metrics.tilt_profiled_pmf`)."""
        return torch.log_softmax(self.duration_scores().detach().float(), dim=0)
