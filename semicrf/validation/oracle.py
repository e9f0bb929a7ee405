"""The Bayes ceiling: the generator's own model, written as a Semi-CRF and decoded exactly.

The synthetic generator is a generalised HMM whose parameters we know, so the best any model
can do on its data is computable. :class:`BayesOracle` builds, for a
:class:`~semicrf.data.GeneratorConfig` and token windows, the layer's inputs over the gene
grammar's internal states (:mod:`semicrf.gene_grammar`):

- emissions ``scores[b, t, s] = log p(x_t | body row of s at t)``: the intergenic, intron and
  UTR rows, and for an exon of frame f the codon row of codon position (t - f) mod 3;
- site rows at fixed offsets from a boundary t (start codon, donor exon rows + GT + donor
  intron rows, poly-pyrimidine tract + acceptor intron rows + AG + acceptor exon base, stop
  codon, polyA at C = 5) enter the per-position transition of that boundary as the exact
  log-likelihood ratio against the body rows they replace (positions outside the window
  count 0), plus the log-probability of the step (an exon ends its gene with probability
  ``1 / mean exon count``, otherwise an intron follows);
- durations: ``log p(d)`` of each class for d = 1..T (``"true"``: the generator's integer
  pmfs; ``"geometric"``: geometric pmfs with the same means; ``"flat"``: uniform on 1..T), the
  mass beyond T in row K - 1 = T with a geometric tail, so the censored last run scores its
  exact survival ``log P(D >= L)`` (geometric durations need only K = 1 and their tail);
- the window starts at the start of an intergenic region (``start`` -inf elsewhere).

What it does not model: the exon count (the generator draws 2..6 uniformly; here each exon
ends its gene with a fixed probability, so one-exon and long genes get some mass); site rows
of the censored last run's far end that fall inside the window; and overlapping site windows
of very short segments (the generator overwrites, the oracle adds both ratios). With the
default lengths (exon >= 30, intron >= 100) only the first two can occur.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import semicrf
from semicrf.data.composition import ProfileTable
from semicrf.data.config import GeneratorConfig, class_names
from semicrf.data.durations import true_duration_pmf
from semicrf.gene_grammar import (
    BOUNDARY_KINDS,
    EXON_STATES,
    INTERGENIC_STATE,
    INTRON_STATES,
    UTR3_STATE,
    UTR5_STATE,
    GeneGrammar,
)

DURATION_MODELS = ("true", "geometric", "flat")
DECODERS = ("viterbi", "posterior")

#: Floor of body-row log-probabilities (a zero base probability in a background row); the
#: layer needs finite emissions. Site rows keep their -inf (forbidden boundaries).
LOG_FLOOR = -1.0e4
#: Slope of the geometric tail that holds the mass of lengths beyond the window.
TAIL_SLOPE = -1.0


@dataclass(frozen=True)
class OracleInputs:
    """The layer's inputs for a batch of B windows of length T over S internal states.

    ``scores`` (B, T, S), ``transition`` (B, T, S, S), ``duration`` (K, S), ``tail`` (S,),
    ``start`` (S,), ``lengths`` (B,), ``censored`` (B, 2): all float64 / long / bool.
    """

    scores: Tensor
    transition: Tensor
    duration: Tensor
    tail: Tensor
    start: Tensor
    lengths: Tensor
    censored: Tensor

    def layer_kwargs(self) -> dict[str, Tensor | str]:
        """Keyword arguments of the layer's contract functions (runs semantics)."""
        return {"scores": self.scores, "transition": self.transition, "duration": self.duration,
                "lengths": self.lengths, "start": self.start, "semantics": "runs",
                "tail": self.tail, "censored": self.censored}


def duration_log_pmf(config: GeneratorConfig, label: int, kind: str, length: int) -> np.ndarray:
    """(length + 1,) float64: log P(D = d) for d = 1..length, then log P(D > length).

    ``kind``: "true" (the generator's pmf), "geometric" (same mean) or "flat" (uniform on
    1..length)."""
    if kind not in DURATION_MODELS:
        raise ValueError(f"durations must be one of {DURATION_MODELS}, got {kind!r}")
    if kind == "flat":
        pmf = np.full(length, 1.0 / length)
        rest = 0.0
    else:
        full = true_duration_pmf(config, label)
        if kind == "true":
            pmf = true_duration_pmf(config, label, length)
            rest = float(full[length:].sum())
        else:
            rate = 1.0 / float(np.dot(np.arange(1, full.size + 1), full))
            d = np.arange(1, length + 1)
            pmf = rate * (1.0 - rate) ** (d - 1)
            rest = (1.0 - rate) ** length
    with np.errstate(divide="ignore"):
        return np.log(np.append(pmf, rest))


def _shifted(values: np.ndarray, shift: int) -> np.ndarray:
    """out[..., t] = values[..., t + shift] where 0 <= t + shift < T, else 0."""
    out = np.zeros_like(values)
    length = values.shape[-1]
    if shift >= 0:
        out[..., : max(length - shift, 0)] = values[..., shift:]
    else:
        out[..., -shift:] = values[..., : length + shift]
    return out


class BayesOracle:
    """The generating model of ``config`` as a Semi-CRF over the gene grammar's states.

    ``durations``: "true", "geometric" or "flat" (see the module docstring); emissions and
    sites are the same for all three.
    """

    def __init__(self, config: GeneratorConfig, num_classes: int = 3,
                 durations: str = "true") -> None:
        class_names(num_classes)
        if durations not in DURATION_MODELS:
            raise ValueError(f"durations must be one of {DURATION_MODELS}, got {durations!r}")
        self.config, self.num_classes, self.durations = config, num_classes, durations
        self.grammar = GeneGrammar(num_classes)
        self.table = ProfileTable(config)
        counts = config.exons_per_gene
        self.gene_end_prob = 2.0 / (counts.min + counts.max)

    # ---- the model's parts ---------------------------------------------------------------

    def step_log_prob(self) -> Tensor:
        """(S, S) float64: log-probability of each boundary kind's step (0 where there is no
        choice; -inf where the grammar never allows it)."""
        q = self.gene_end_prob
        by_kind = torch.zeros(len(BOUNDARY_KINDS), dtype=torch.float64)
        by_kind[BOUNDARY_KINDS.index("gene_end")] = math.log(q)
        by_kind[BOUNDARY_KINDS.index("donor")] = math.log1p(-q) if q < 1 else -math.inf
        steps = by_kind[self.grammar.boundary_kind]
        return steps.masked_fill(~self.grammar.allowed.any(dim=0), -math.inf)

    def duration_table(self, length: int) -> tuple[Tensor, Tensor]:
        """(duration (K, S), tail (S,)) float64. Geometric durations: K = 1, row 0 = log r and
        tail log(1 - r) (exact). Otherwise K = length + 1: row d - 1 = log P(D = d) for
        d <= length; row ``length`` and the tail hold P(D > length) as a geometric tail."""
        if self.durations == "geometric":
            first = [duration_log_pmf(self.config, label, "geometric", 1)[0]
                     for label in range(self.num_classes)]
            rate = torch.tensor(first, dtype=torch.float64).exp()
            table = self.grammar.expand_by_label(rate.log().unsqueeze(0))
            return table, self.grammar.expand_by_label(torch.log1p(-rate))
        columns = []
        for label in range(self.num_classes):
            logp = duration_log_pmf(self.config, label, self.durations, length)
            logp[-1] += math.log1p(-math.exp(TAIL_SLOPE))
            columns.append(torch.from_numpy(logp))
        table = self.grammar.expand_by_label(torch.stack(columns, dim=1))
        tail = torch.full((self.grammar.num_states,), TAIL_SLOPE, dtype=torch.float64)
        return table, tail

    def _row_log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """(R, T) log p(x_t | profile row r); an unknown base (N) has 0 under every row."""
        with np.errstate(divide="ignore"):
            logp = np.log(self.table.probs)
        known = tokens < 4
        out = np.zeros((logp.shape[0], tokens.shape[0]))
        out[:, known] = logp[:, tokens[known]]
        return out

    def _site_ratio(self, logp: np.ndarray, rows: np.ndarray, body: np.ndarray,
                    offset: int) -> np.ndarray:
        """(T,) at boundary t: sum_i log p(x | site row i) - body, site row i at t + offset + i."""
        total = np.zeros(logp.shape[1])
        for i, row in enumerate(rows.tolist()):
            total += _shifted(logp[row] - body, offset + i)
        return total

    def _sequence(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(emissions (T, S), boundary ratios (T, S, S)) of one window."""
        ids, sites, cfg = self.table.ids, self.config.sites, self.config
        grammar = self.grammar
        length = tokens.shape[0]
        logp = self._row_log_probs(tokens)
        floored = np.maximum(logp, LOG_FLOOR)
        t = np.arange(length)
        codon = ids["exon_codon"]
        # body of an exon of frame f at position t: codon row (t - f) mod 3
        exon_body = np.stack([floored[codon[(t - f) % 3], t] for f in range(3)])  # (3, T)
        intron_body = floored[ids["intron"][0]]
        emissions = np.zeros((length, grammar.num_states))
        emissions[:, INTERGENIC_STATE] = floored[ids["intergenic"][0]]
        for f in range(3):
            emissions[:, EXON_STATES[f]] = exon_body[f]
            emissions[:, INTRON_STATES[f]] = intron_body
        if self.num_classes == 5:
            emissions[:, UTR5_STATE] = floored[ids["utr5"][0]]
            emissions[:, UTR3_STATE] = floored[ids["utr3"][0]]

        def site(rows: np.ndarray, body: np.ndarray, offset: int) -> np.ndarray:
            return self._site_ratio(logp, rows, body, offset)

        n_ppt = sites.ppt_length
        intron_after = site(ids["donor_intron"], intron_body, 2)
        intron_before = (site(np.full(n_ppt, ids["ppt"][0]), intron_body, -4 - n_ppt)
                         + site(ids["acceptor_intron"], intron_body, -4))
        if cfg.splice_motifs:
            intron_after += site(ids["gt"], intron_body, 0)
            intron_before += site(ids["ag"], intron_body, -2)
        # a gene starts at t with codon position 0: frame f = t mod 3
        start = self._start_ratio(logp, floored)
        ratios = np.zeros((length, grammar.num_states, grammar.num_states))
        kind = grammar.boundary_kind.numpy()
        for f in range(3):
            stop = site(ids["stop_codon"], exon_body[f], -3)
            donor = site(ids["donor_exon"], exon_body[f], -3) + intron_after
            acceptor = intron_before + site(ids["acceptor_exon"], exon_body[f], 0)
            for prev in range(grammar.num_states):
                for nxt in range(grammar.num_states):
                    name = BOUNDARY_KINDS[kind[prev, nxt]]
                    exon_prev, exon_next = prev == EXON_STATES[f], nxt == EXON_STATES[f]
                    if name == "gene_start" and exon_next:
                        ratios[:, prev, nxt] = start
                    elif name == "gene_end" and exon_prev:
                        ratios[:, prev, nxt] = stop
                    elif name == "donor" and exon_prev:
                        ratios[:, prev, nxt] = donor
                    elif name == "acceptor" and exon_next:
                        ratios[:, prev, nxt] = acceptor
        if self.num_classes == 5:
            end = -sites.polya_offset - 6
            ratios[:, UTR3_STATE, INTERGENIC_STATE] = site(ids["polya"],
                                                           floored[ids["utr3"][0]], end)
        return emissions, ratios

    def _start_ratio(self, logp: np.ndarray, floored: np.ndarray) -> np.ndarray:
        """(T,) start-codon ratio at t: site row i replaces codon row i at t + i."""
        codon = self.table.ids["exon_codon"]
        rows = self.table.ids["start_codon"]
        total = np.zeros(logp.shape[1])
        for i in range(len(rows)):
            total += _shifted(logp[rows[i]] - floored[codon[i]], i)
        return total

    def inputs(self, tokens: np.ndarray) -> OracleInputs:
        """The layer's inputs for windows ``tokens`` (B, T) uint8 (all of length T)."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] < 1 or tokens.dtype != np.uint8:
            raise ValueError(f"tokens must be a (B, T) uint8 array with T >= 1, got "
                             f"{tokens.dtype} {tokens.shape}")
        if tokens.size and int(tokens.max()) > 4:
            raise ValueError("tokens must hold base codes 0..4 (A, C, G, T, N)")
        batch, length = tokens.shape
        parts = [self._sequence(row) for row in tokens]
        scores = torch.from_numpy(np.stack([p[0] for p in parts]))
        ratios = torch.from_numpy(np.stack([p[1] for p in parts]))
        steps = self.step_log_prob()
        mask = self.grammar.transition_mask(length)
        transition = (steps + ratios).masked_fill(~mask, -math.inf)
        duration, tail = self.duration_table(length)
        start = torch.zeros(self.grammar.num_states, dtype=torch.float64).masked_fill(
            ~self.grammar.start_allowed(anywhere=False), -math.inf)
        censored = torch.tensor([[False, True]] * batch)
        lengths = torch.full((batch,), length, dtype=torch.int64)
        return OracleInputs(scores, transition, duration, tail, start, lengths, censored)

    # ---- inference -----------------------------------------------------------------------

    def log_partition(self, tokens: np.ndarray) -> Tensor:
        """(B,) log p(tokens) under the oracle's model."""
        return semicrf.log_partition(**self.inputs(tokens).layer_kwargs())

    def score(self, tokens: np.ndarray, runs: Sequence[Sequence[tuple[int, int, int]]]) -> Tensor:
        """(B,) log p(tokens, internal runs) of given internal runs (start, end, state)."""
        kwargs = self.inputs(tokens).layer_kwargs()
        del kwargs["lengths"]
        return semicrf.segmentation_score(segments=[list(r) for r in runs], **kwargs)

    def decode(self, tokens: np.ndarray, decoder: str = "viterbi") -> list[np.ndarray]:
        """Output labels (int64 (T,) per window): the best labelling (``"viterbi"``) or the
        most probable label at each position (``"posterior"``)."""
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        kwargs = self.inputs(tokens).layer_kwargs()
        length = int(np.asarray(tokens).shape[1])
        if decoder == "posterior":
            probs = self.grammar.collapse_by_label(semicrf.marginals(**kwargs))
            return [row.argmax(dim=-1).numpy() for row in probs]
        _, paths = semicrf.viterbi(**kwargs)
        out = []
        for runs in paths:
            labels = np.zeros(length, dtype=np.int64)
            for s, e, label in self.grammar.output_runs(runs):
                labels[s:e] = label
            out.append(labels)
        return out


def load_generator(data_dir: str) -> tuple[GeneratorConfig, dict[str, object]]:
    """(generator config, meta.json) of a generated dataset; a dataset without a generator
    (``semicrf import``) is a one-line ``ValueError``."""
    from semicrf.data import read_meta  # noqa: PLC0415

    meta = read_meta(data_dir)
    if "generator" not in meta:
        raise ValueError(f"{str(data_dir)!r} was not written by `semicrf generate` (no generator "
                         "in meta.json): the oracle needs the generating model")
    return GeneratorConfig.from_dict(meta["generator"]), meta


def decode_split(data_dir: str, split: str = "test", durations: str = "true",
                 decoder: str = "viterbi", progress: Callable[[int], object] | None = None
                 ) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, object]]:
    """(predicted labels, true labels, settings) of a generated split decoded by the oracle
    of the generator in ``data_dir``/meta.json. ``progress(1)`` after every sequence."""
    from semicrf.data import load_split  # noqa: PLC0415 - keeps import light

    config, meta = load_generator(data_dir)
    oracle = BayesOracle(config, int(meta["num_classes"]), durations)
    records = load_split(data_dir, split)
    pred, true = [], []
    for record in records:
        pred.extend(oracle.decode(record.tokens[None], decoder))
        true.append(record.labels)
        if progress is not None:
            progress(1)
    settings = {"data_dir": str(data_dir), "split": split, "durations": durations,
                "decoder": decoder, "num_classes": int(meta["num_classes"]),
                "signal": config.signal, "num_sequences": len(records),
                "seq_length": int(meta["seq_length"]),
                "gene_end_prob": oracle.gene_end_prob}
    return pred, true, settings


def evaluate_split(data_dir: str, split: str = "test", durations: str = "true",
                   decoder: str = "viterbi", max_duration: int = 1000,
                   output: str | None = None, progress: Callable[[int], object] | None = None,
                   predictions: str | None = None) -> dict[str, object]:
    """The :func:`semicrf.metrics.evaluate` dict of the oracle's labels on a generated split,
    with ``oracle`` (settings) and ``timing`` added; written as JSON to ``output`` and the
    labels to ``predictions`` (the models' ``.npz`` format) if given (labels first: a JSON
    on disk means both are complete)."""
    from semicrf.atomic_io import write_json  # noqa: PLC0415
    from semicrf.metrics import evaluate  # noqa: PLC0415
    from semicrf.pipeline import save_predictions  # noqa: PLC0415

    began = time.perf_counter()
    pred, true, settings = decode_split(data_dir, split, durations, decoder, progress)
    seconds = time.perf_counter() - began
    result = evaluate(pred, true, int(settings["num_classes"]), max_duration)
    result["oracle"] = settings
    result["timing"] = {"decode_seconds": seconds,
                        "seconds_per_sequence": seconds / max(len(pred), 1),
                        "threads": torch.get_num_threads()}
    if predictions is not None:
        save_predictions(Path(predictions), pred)
    if output is not None:
        write_json(output, result)
    return result


#: Duration models of the Bayes-ceiling rows of the reports (the limit money curve).
CEILING_DURATIONS: tuple[str, ...] = ("true", "geometric")


def ceiling_paths(data_dir: str | Path, durations: str) -> tuple[Path, Path]:
    """(metrics JSON, predicted labels .npz) of the oracle's Viterbi on the test split of
    ``data_dir``, cached beside the data."""
    stem = Path(data_dir) / f"oracle_{durations}_viterbi"
    return stem.with_suffix(".json"), stem.with_suffix(".npz")


def ceiling_metrics(data_dir: str | Path, durations: str, max_duration: int) -> dict[str, Any]:
    """The oracle's Viterbi metrics on the test split of ``data_dir`` (computed and cached by
    :func:`ceiling_paths` unless cached)."""
    from semicrf.atomic_io import read_json  # noqa: PLC0415

    metrics_path, labels_path = ceiling_paths(data_dir, durations)
    if metrics_path.is_file() and labels_path.is_file():
        return read_json(metrics_path, str(metrics_path))
    return evaluate_split(str(data_dir), "test", durations, "viterbi", max_duration,
                          str(metrics_path), predictions=str(labels_path))


def ceiling_rows(data_dir: str | Path, max_duration: int, near: int = 10) -> dict[str, Any]:
    """The Bayes ceiling on the test split of ``data_dir``: per duration model in
    :data:`CEILING_DURATIONS` the oracle's Viterbi boundary F1 (exact and within ``near``
    bp), segment F1, ``duration_kl_log`` and seconds per window (:func:`ceiling_metrics`)."""
    out = {}
    for kind in CEILING_DURATIONS:
        metrics = ceiling_metrics(data_dir, kind, max_duration)
        out[kind] = {key: metrics[key] for key in ("boundary_f1", f"boundary_f1_tol{near}",
                                                   "segment_f1", "duration_kl_log")}
        out[kind]["seconds_per_sequence"] = metrics["timing"]["seconds_per_sequence"]
    return out


#: The sharper-duration ground truth of the limit curve's second panel (docs/validation.md):
#: exons of log-scale sigma 0.2 and a narrow unimodal intron of median 65 bp.
SHARP_DURATIONS: dict[str, Any] = {
    "durations": {"exon": {"sigma": 0.2}, "intron": {"median": 65.0, "sigma": 0.15, "min": 40}}}


def limit_curve(overrides: dict[str, Any], signals: Sequence[float], num_test: int,
                seq_length: int, cache_dir: str | Path, seed: int = 42,
                max_duration: int = 1000) -> list[dict[str, Any]]:
    """The Bayes ceiling of a ground truth (the generator defaults with ``overrides``, or a
    complete generator config) per signal: ``num_test`` generated test windows of
    ``seq_length`` (data ``seed``) decoded with true and geometric durations; per signal
    ``{"signal", "true": metrics, "geometric": metrics}`` (:func:`evaluate_split` dicts,
    cached under ``cache_dir``)."""
    from semicrf.data import generate_dataset  # noqa: PLC0415

    rows = []
    for signal in signals:
        data = Path(cache_dir) / f"signal{float(signal):g}"
        if not (data / "meta.json").is_file():
            generate_dataset(data, num_train=1, num_val=1, num_test=num_test,
                             seq_length=seq_length, seed=seed, config=overrides, signal=signal)
        rows.append({"signal": float(signal),
                     **{kind: ceiling_metrics(data, kind, max_duration)
                        for kind in CEILING_DURATIONS}})
    return rows
