"""The Bayes oracle (semicrf.validation.oracle) against independent computations: the
generator's own profile rows (ProfileTable.assign) and duration pmfs, and enumeration of every
internal labelling on tiny windows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from semicrf.data import generate_dataset, load_split
from semicrf.data.config import GeneratorConfig
from semicrf.data.durations import true_duration_cdf, true_duration_pmf
from semicrf.data.generate import generate_sequence, sequence_rng
from semicrf.data.structure import FIRST_EXON, LAST_EXON, Structure
from semicrf.gene_grammar import EXON_STATES, INTRON_STATES
from semicrf.labels import EXON, INTERGENIC, INTRON, UTR3, UTR5
from semicrf.validation.oracle import BayesOracle

# lengths long enough that site windows never overlap (ppt 1: an intron needs 2 + 4 + 1 + 4)
TINY = {
    "durations": {
        "intergenic": {"median": 3.0, "sigma": 1.0, "min": 1, "max": 30},
        "exon": {"median": 7.0, "sigma": 0.5, "min": 6, "max": 12},
        "intron": {"median": 12.0, "sigma": 0.3, "min": 11, "max": 15},
        "utr5": {"median": 2.0, "sigma": 0.5, "min": 1, "max": 5},
        "utr3": {"median": 7.0, "sigma": 0.3, "min": 6, "max": 9},
    },
    "exons_per_gene": {"min": 1, "max": 2},
    "signal": 0.7,
    "sites": {"ppt_length": 1, "polya_offset": 0},
}
# the default ground truth with short intergenic regions and introns (several genes per window)
SHORT = {"durations": {"intergenic": {"median": 300.0, "min": 50, "max": 2000},
                       "intron": {"median": 200.0, "min": 100, "max": 1000}}}


def _log_duration(config: GeneratorConfig, label: int, kind: str, d: int, window: int,
                  censored: bool) -> float:
    """log P(D = d), or log P(D >= d) when censored, of the stated duration model."""
    if kind == "true":
        if censored:
            return math.log(1.0 - float(true_duration_cdf(config, label, d - 1)))
        return math.log(float(true_duration_pmf(config, label, d)[d - 1]))
    if kind == "flat":
        return math.log((window - d + 1 if censored else 1) / window)
    pmf = true_duration_pmf(config, label)
    rate = 1.0 / float(np.dot(np.arange(1, pmf.size + 1), pmf))
    return (d - 1) * math.log1p(-rate) + (0.0 if censored else math.log(rate))


def _structure(runs: list[tuple[int, int, int]], window: int, far_end: int) -> Structure:
    """The generator's Structure of internal runs; the last run drawn ``far_end`` past the
    window (its far-end sites outside it)."""
    label_of = {0: INTERGENIC, 7: UTR5, 8: UTR3}
    labels, phases, flags = [], [], []
    for i, (s, _, state) in enumerate(runs):
        if state in EXON_STATES:
            labels.append(EXON)
            phases.append((s - EXON_STATES.index(state)) % 3)
            first = i == 0 or runs[i - 1][2] not in INTRON_STATES
            last = i + 1 < len(runs) and runs[i + 1][2] not in INTRON_STATES
            flags.append((FIRST_EXON if first else 0) | (LAST_EXON if last else 0))
        else:
            labels.append(INTRON if state in INTRON_STATES else label_of[state])
            phases.append(0)
            flags.append(0)
    start = np.array([r[0] for r in runs])
    end = np.array([r[1] for r in runs])
    end[-1] = window + far_end
    return Structure(start=start, end=end, label=np.array(labels), phase=np.array(phases),
                     flags=np.array(flags), seq_length=window)


def _log_joint(oracle: BayesOracle, tokens: np.ndarray, structure: Structure,
               kind: str = "true") -> float:
    """log p(tokens, structure) from the generator's profile rows and the stated durations
    and exon-count steps (each exon ends its gene with probability oracle.gene_end_prob)."""
    window = tokens.shape[0]
    table = oracle.table  # the generator's ProfileTable
    rows = table.assign(structure)[:window]
    with np.errstate(divide="ignore"):
        total = float(np.log(table.probs[rows, tokens]).sum())
    segments = structure.segments()
    q = oracle.gene_end_prob
    for i, (s, e, label) in enumerate(segments):
        last = i == len(segments) - 1
        total += _log_duration(oracle.config, label, kind, e - s, window, censored=last)
        if not last and label == EXON:
            total += math.log(1 - q) if segments[i + 1][2] == INTRON else math.log(q)
    return total


def _all_runs(oracle: BayesOracle, window: int, bounded: bool
              ) -> list[list[tuple[int, int, int]]]:
    """Every internal labelling of [0, window) the grammar admits, starting intergenic; with
    ``bounded`` only run lengths the true durations allow (within [min, max] of the class,
    the last run at most max)."""
    allowed = oracle.grammar.allowed
    labels = oracle.grammar.state_label.tolist()
    specs = [oracle.config.duration(label) for label in labels]
    out = []

    def grow(runs: list[tuple[int, int, int]], pos: int, state: int) -> None:
        shortest, longest = (specs[state].min, specs[state].max) if bounded else (1, window)
        for end in range(pos + 1, min(pos + longest, window) + 1):
            here = [*runs, (pos, end, state)]
            if end == window:
                out.append(here)
            elif end - pos >= shortest:
                for nxt in allowed[end % 3, state].nonzero().flatten().tolist():
                    grow(here, end, nxt)

    grow([], 0, 0)
    return out


@pytest.mark.parametrize("num_classes", [3, 5])
def test_true_labelling_score_is_the_generators_log_probability(num_classes):
    config = GeneratorConfig.from_overrides(SHORT)
    oracle = BayesOracle(config, num_classes)
    window, checked = 1500, 0
    for i in range(12):
        tokens, structure = generate_sequence(config, num_classes, window, sequence_rng(3, 0, i))
        if structure.end[-1] - window < 30:  # the censored run's far-end sites in the window
            continue
        runs = oracle.grammar.internal_runs(structure.segments())
        assert runs is not None
        score = float(oracle.score(tokens[None], [runs])[0])
        assert score == pytest.approx(_log_joint(oracle, tokens, structure), abs=1e-6)
        assert float(oracle.log_partition(tokens[None])[0]) >= score
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize(("num_classes", "window"),
                         [(3, 26), (5, 24)])
def test_log_partition_is_the_marginal_likelihood(num_classes, window):
    config = GeneratorConfig.from_overrides(TINY)
    oracle = BayesOracle(config, num_classes)
    labellings = _all_runs(oracle, window, bounded=True)
    rng = np.random.default_rng(0)
    batch = [generate_sequence(config, num_classes, window, sequence_rng(5, 0, i))[0]
             for i in range(2)] + [rng.integers(0, 4, window).astype(np.uint8)]
    tokens = np.stack(batch)
    log_z = oracle.log_partition(tokens)
    for b in range(tokens.shape[0]):
        joints = [_log_joint(oracle, tokens[b], _structure(r, window, 100))
                  for r in labellings]
        expected = torch.logsumexp(torch.tensor(joints, dtype=torch.float64), 0)
        assert float(log_z[b]) == pytest.approx(float(expected), abs=1e-9)
        best = labellings[int(np.argmax(joints))]
        labels = oracle.decode(tokens[b:b + 1])[0]
        want = np.concatenate([np.full(e - s, int(oracle.grammar.state_label[c]))
                               for s, e, c in best])
        np.testing.assert_array_equal(labels, want)


@pytest.mark.parametrize("kind", ["true", "geometric", "flat"])
def test_structure_prior_sums_to_one(kind):
    window = 26 if kind == "true" else 9
    # uniform rows everywhere: the joint is the structure prior times 4 ** -window
    uniform = GeneratorConfig.from_overrides({**TINY, "signal": 0.0, "splice_motifs": False})
    oracle = BayesOracle(uniform, 3, kind)
    runs = _all_runs(oracle, window, bounded=kind == "true")
    tokens = np.random.default_rng(1).integers(0, 4, (1, window)).astype(np.uint8)
    joints = [_log_joint(oracle, tokens[0], _structure(r, window, 100), kind) for r in runs]
    total = sum(math.exp(j + window * math.log(4)) for j in joints)
    assert total == pytest.approx(1.0, abs=1e-9)
    # the oracle's own tables: log Z = log 4 ** -window, scores equal the independent joints
    assert float(oracle.log_partition(tokens)[0]) == pytest.approx(-window * math.log(4), abs=1e-9)
    for i in range(0, len(runs), max(len(runs) // 7, 1)):
        assert float(oracle.score(tokens, [runs[i]])[0]) == pytest.approx(joints[i], abs=1e-9)


def test_cli_writes_the_metrics_and_refuses_imported_data(tmp_path, capsys):
    from semicrf.cli import main

    data = generate_dataset(tmp_path / "data", num_train=1, num_val=1, num_test=2,
                            seq_length=1200, config=SHORT, seed=1)
    out = tmp_path / "oracle.json"
    argv = ["oracle", "--data-dir", str(data), "--durations", "geometric", "--decoder",
            "posterior", "--output", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert 0.0 <= result["boundary_f1"] <= 1.0 and "boundary_f1_tol5" in result
    assert result["oracle"]["durations"] == "geometric" and result["oracle"]["num_sequences"] == 2
    assert result["timing"]["seconds_per_sequence"] > 0
    meta = json.loads((data / "meta.json").read_text())
    del meta["generator"]
    (data / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["oracle", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no generator" in err and len(err.splitlines()) == 1


def test_bad_arguments_are_one_line_errors():
    config = GeneratorConfig.from_overrides(SHORT)
    with pytest.raises(ValueError, match="durations must be one of"):
        BayesOracle(config, 3, "gamma")
    oracle = BayesOracle(config)
    with pytest.raises(ValueError, match="decoder must be one of"):
        oracle.decode(np.zeros((1, 10), np.uint8), "mode")
    with pytest.raises(ValueError, match="tokens must be"):
        oracle.inputs(np.zeros(10, np.uint8))


def test_compare_shows_the_oracle_column(tmp_path):
    from semicrf.report import comparison_table

    (tmp_path / "metrics.json").write_text(json.dumps(
        {"models": {"linear": {"metrics": {"boundary_f1": 0.1}}}}))
    (tmp_path / "oracle.json").write_text(json.dumps({"boundary_f1": 0.4, "segment_f1": 0.3}))
    table = comparison_table(tmp_path)
    assert table.loc["boundary_f1", "oracle"] == 0.4
    assert table.loc["boundary_f1", "linear"] == 0.1
    assert table.loc["boundary_f1_of_ceiling", "linear"] == pytest.approx(0.25)
    assert table.loc["boundary_f1_of_ceiling", "oracle"] == 1.0


def test_ceiling_rows_are_cached_beside_the_data(tmp_path):
    from semicrf.validation.oracle import CEILING_DURATIONS, ceiling_rows

    data = generate_dataset(tmp_path / "data", num_train=1, num_val=1, num_test=2,
                            seq_length=1200, config=SHORT, seed=2)
    rows = ceiling_rows(data, 100)
    assert set(rows) == set(CEILING_DURATIONS)
    for kind in CEILING_DURATIONS:
        cached = json.loads((data / f"oracle_{kind}_viterbi.json").read_text())
        assert rows[kind]["boundary_f1"] == cached["boundary_f1"]
        assert set(rows[kind]["duration_kl_log"]) == {"intergenic", "exon", "intron"}
    assert ceiling_rows(data, 100) == rows
    # the labels are cached beside the metrics and give the same boundary F1
    from semicrf.metrics import evaluate
    from semicrf.pipeline import load_predictions
    from semicrf.validation.oracle import ceiling_paths

    labels = load_predictions(ceiling_paths(data, "true")[1])
    true = [r.labels for r in load_split(data, "test")]
    assert evaluate(labels, true, 3, 100)["boundary_f1"] == rows["true"]["boundary_f1"]


def test_limit_curve_of_the_sharp_ground_truth(tmp_path):
    from semicrf.validation.oracle import SHARP_DURATIONS, limit_curve

    rows = limit_curve(SHARP_DURATIONS, [1.0, 0.5], 2, 1500, tmp_path, max_duration=100)
    assert [r["signal"] for r in rows] == [1.0, 0.5]
    for r in rows:
        assert 0.0 <= r["geometric"]["boundary_f1"] <= 1.0 and 0.0 <= r["true"]["boundary_f1"] <= 1.0
        assert r["true"]["oracle"]["durations"] == "true"
    assert (tmp_path / "signal1" / "oracle_true_viterbi.npz").is_file()
    assert limit_curve(SHARP_DURATIONS, [1.0], 2, 1500, tmp_path, max_duration=100)[0] == rows[0]


def test_report_ceiling_section_lists_both_duration_models():
    from semicrf.validation.report import ceiling_markdown

    row = {"boundary_f1": 0.42, "boundary_f1_tol10": 0.5, "segment_f1": 0.3,
           "duration_kl_log": {"exon": 0.2, "intron": 0.1}, "seconds_per_sequence": 4.0}
    lines = ceiling_markdown({"true": row, "geometric": {**row, "boundary_f1": 0.39}},
                             {"semicrf": 0.01 / 0.42})
    text = "\n".join(lines)
    assert "| true | 0.420 |" in text and "| geometric | 0.390 |" in text
    assert "semicrf 0.024" in text
