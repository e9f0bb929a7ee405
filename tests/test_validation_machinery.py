"""The validation suite's machinery on a tiny run and on synthetic inputs with known answers.

Decides no scientific claim: it checks the experiment cache, the report fields and the
statistics code (bootstrap, duration histograms, claim rules) that ``pytest -m validation``
relies on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semicrf import validation as v
from semicrf.data import GeneratorConfig
from semicrf.metrics import (
    boundary_match_counts,
    evaluate,
    f1_from_counts,
    log_length_edges,
    per_sequence_length_histograms,
    per_sequence_log_histograms,
    pooled_kl,
)
from semicrf.report import load_results
from semicrf.stats import bootstrap, paired_bootstrap

TINY = v.Scale(
    name="tiny", length_factor=50, num_train=6, num_val=2, num_test=4,
    run=v.scale_run(encoder="bilstm", max_duration=20, hidden_dim=4, num_layers=1, batch_size=3,
                    lr=1e-2, epochs=1, device="cpu", threads="1"),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("validation_results")
    experiment = v.build_experiment(TINY)
    return root, experiment, v.run_experiment(experiment, root)


def test_tiny_experiment_claims_and_report(tiny_run):
    root, experiment, result = tiny_run
    assert result.root == root / f"tiny-{experiment.key()}"
    assert (result.root / "complete.json").is_file() and not result.from_cache
    assert "code_at_start" in json.loads((result.root / "complete.json").read_text())
    assert set(result.payload["models"]) == set(v.MODEL_NAMES)
    assert list(result.shifted_payload["models"]) == ["semicrf"]
    assert len(result.true_labels) == TINY.num_test
    assert all(len(p) == TINY.seq_length for p in result.predictions["semicrf"])
    # both decoders for every model, the ablated semicrf (Viterbi) and the probes
    assert set(result.decoded) == {"viterbi", "posterior"}
    assert set(result.decoded["posterior"]) == set(v.MODEL_NAMES)
    assert set(result.predictions) == {*v.MODEL_NAMES, v.ABLATED_MODEL, *v.ORACLE_UNITS}
    assert all(len(p) == TINY.seq_length for p in result.predictions["oracle_true"])
    for probe in (result.probe, result.shifted_probe):
        post = np.asarray(probe["posterior_durations"])
        assert post.shape == (TINY.num_test, TINY.max_duration, 3)
        assert (post >= 0).all() and post.sum() > 0
    entry = result.payload["models"]["semicrf"]
    assert entry["decoder"] == "viterbi" and set(entry["metrics_other_decoders"]) == {"posterior"}
    assert entry["test_loss"] > 0

    claims = v.decide_claims(result, n_boot=50, check_triton=False)
    assert [c.id for c in claims] == v.claim_ids()
    by_id = {c.id: c for c in claims}
    # One epoch: the final validation loss *is* the first, so the stability rule must fail.
    for model in [*v.MODEL_NAMES, v.SHIFTED_MODEL]:
        assert by_id[f"stable_{model}"].passed is False
        assert by_id[f"stable_{model}"].estimate == pytest.approx(1.0)
    assert by_id["triton_matches_reference"].passed is None
    # competence and the limit gain are decided on the oracle's labels of the same windows
    counts = {m: boundary_match_counts(result.predictions[m], result.true_labels, 3)
              for m in ("semicrf", "linear", "oracle_true", "oracle_geometric")}
    for m in v.COMPETENCE_MODELS:
        claim = by_id[f"competence_{m}"]
        top = f1_from_counts(counts["oracle_true"])
        if top > 0:
            assert claim.estimate == pytest.approx(f1_from_counts(counts[m]) / top, abs=1e-12)
            assert claim.passed is (claim.estimate >= v.COMPETENCE_FRACTION)
    gain = by_id["learned_gain_vs_limit_gain"]
    want = (f1_from_counts(counts["semicrf"]) - f1_from_counts(counts["linear"])
            - f1_from_counts(counts["oracle_true"]) + f1_from_counts(counts["oracle_geometric"]))
    assert gain.estimate == pytest.approx(want, abs=1e-12)
    assert gain.passed is (gain.ci_low <= 0.0 <= gain.ci_high)
    # The full-sample estimate of a KL claim equals evaluate()'s duration_kl.
    kl = result.payload["models"]["semicrf"]["metrics"]["duration_kl_log"]["exon"]
    assert by_id["duration_kl_exon_absolute"].estimate == pytest.approx(kl, abs=1e-12)

    paths = v.write_report(result, claims, command="pytest -m fast", session_wall_s=1.5,
                           results_root=root, n_boot=50)
    report = json.loads(paths["json"].read_text())
    for key in ("date", "command", "machine", "experiment_wall_s", "experiment", "thresholds",
                "claims", "summary", "models", "plots", "key", "results_dir"):
        assert key in report, key
    assert report["experiment_wall_s"] > 0
    assert sum(report["summary"].values()) == len(v.claim_ids())
    assert [c["id"] for c in report["posterior_decoder"]] == v.decoded_claim_ids("@posterior")
    row = report["models"]["semicrf"]
    assert row["test_loss"] > 0 and "val_loss_last_epoch_rel_change" in row
    assert row["posterior"]["boundary_f1"] is not None
    for claim in report["claims"]:
        assert {"id", "statistic", "estimate", "ci_low", "ci_high", "threshold", "rule",
                "verdict"} <= set(claim)
        assert claim["verdict"] in ("PASS", "FAIL", "NOT RUN")
    assert set(report["models"]) == {*v.MODEL_NAMES, v.SHIFTED_MODEL}
    # the shifted model's test windows have another ceiling: no fraction for it
    assert set(report["fraction_of_ceiling"]) == set(v.MODEL_NAMES)
    assert set(report["plots"]) >= {"duration_comparison", "training_curves"}
    markdown = paths["md"].read_text()
    assert all(f"| {cid} |" in markdown for cid in v.claim_ids())
    assert (root / "latest_tiny.md").read_text().startswith("# Validation report: tiny scale")


def test_cache_is_reused_resumed_and_rebuilt(tiny_run):
    root, experiment, result = tiny_run
    metrics = result.root / "run" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    again = v.run_experiment(experiment, root)
    assert again.from_cache and metrics.stat().st_mtime_ns == stamp  # nothing retrained
    assert again.payload["models"]["semicrf"]["metrics"] == result.payload["models"]["semicrf"]["metrics"]
    # An interrupted run (no completion marker) is resumed from its checkpoints, not trusted.
    (result.root / "complete.json").unlink()
    resumed = v.run_experiment(experiment, root)
    assert not resumed.from_cache and (result.root / "complete.json").is_file()
    history = resumed.payload["models"]["semicrf"]["history"]
    assert len(history) == TINY.run.epochs  # resumed after the last epoch: no extra epoch
    # --validation-rebuild trains again from scratch.
    ckpt = result.root / "run" / "checkpoints" / "semicrf_last.pt"
    ckpt_stamp = ckpt.stat().st_mtime_ns
    rebuilt = v.run_experiment(experiment, root, rebuild=True)
    assert not rebuilt.from_cache and ckpt.stat().st_mtime_ns != ckpt_stamp


def test_models_side_by_side_give_the_results_of_one_process(tiny_run, tmp_path):
    """The fixture ran the units in 2 processes; one process gives the same numbers."""
    _, experiment, result = tiny_run
    alone = v.run_experiment(experiment, tmp_path, workers=1)
    assert json.loads((alone.root / "complete.json").read_text())["timing"]["workers"] == 1
    assert json.loads((result.root / "complete.json").read_text())["timing"]["workers"] == 2
    for model in v.MODEL_NAMES:
        assert alone.payload["models"][model]["metrics"] == result.payload["models"][model]["metrics"]
        assert alone.payload["models"][model]["test_loss"] == result.payload["models"][model]["test_loss"]
    np.testing.assert_array_equal(alone.probe["posterior_durations"], result.probe["posterior_durations"])
    config = json.loads((result.root / "run" / "config.json").read_text())
    assert tuple(config["models"]) == v.MODEL_NAMES  # the union of the processes' model lists


def test_experiment_key_covers_the_config():
    a = v.build_experiment(TINY)
    assert a.key() == v.build_experiment(TINY).key()
    assert a.key() != v.build_experiment(TINY, {"signal": 0.3}).key()
    assert a.key() != v.build_experiment(v.with_overrides(TINY, epochs=2)).key()
    assert v.build_experiment("cpu").key() != v.build_experiment("full").key()
    with pytest.raises(ValueError, match="unknown validation scale"):
        v.build_experiment("medium")


def test_cpu_scale_is_the_spec_ground_truth_unscaled():
    cpu = v.build_experiment("cpu")
    assert cpu.generator == GeneratorConfig().to_dict()
    d = GeneratorConfig.from_dict(cpu.generator).durations
    assert {n: (d[n].median, d[n].min, d[n].max) for n in ("intergenic", "exon", "intron")} == {
        "intergenic": (5000, 500, 20000), "exon": (150, 30, 500), "intron": (3000, 100, 10000)}
    assert (v.SCALES["cpu"].seq_length, v.SCALES["cpu"].max_duration) == (10000, 1000)
    assert v.SCALES["cpu"].run.decoder == "viterbi" and v.SCALES["cpu"].run.device == "cpu"
    shifted = GeneratorConfig.from_dict(cpu.shifted_generator).durations["exon"]
    assert (shifted.median, shifted.min, shifted.max) == (300, 60, 1000)


def test_scales_and_plugin_agree():
    from semicrf.pytest_plugin import DEFAULT_WORKERS, SCALE_NAMES
    from semicrf.validation.experiment import DEFAULT_WORKERS as experiment_workers

    assert tuple(v.SCALES) == SCALE_NAMES
    assert DEFAULT_WORKERS == experiment_workers


def test_scaled_ground_truth_and_changed_ground_truth():
    cpu = GeneratorConfig.from_dict(v.build_experiment("smoke").generator)
    d = {n: (cpu.durations[n].median, cpu.durations[n].min, cpu.durations[n].max)
         for n in ("intergenic", "exon", "intron")}
    assert d == {"intergenic": (500, 50, 2000), "exon": (15, 3, 50), "intron": (300, 10, 1000)}
    assert cpu.durations["exon"].sigma == GeneratorConfig().durations["exon"].sigma
    assert (v.SCALES["smoke"].seq_length, v.SCALES["smoke"].max_duration) == (2000, 100)
    assert (v.SCALES["full"].seq_length, v.SCALES["full"].max_duration) == (20000, 1000)
    full = v.build_experiment("full")
    assert full.generator == GeneratorConfig().to_dict()
    shifted = GeneratorConfig.from_dict(v.build_experiment("smoke").shifted_generator).durations["exon"]
    assert (shifted.median, shifted.min, shifted.max) == (30, 6, 100)
    # Overrides are applied to the spec's ground truth, then scaled.
    other = v.build_experiment("smoke", {"durations": {"exon": {"median": 200.0}}, "signal": 0.2})
    assert other.generator["durations"]["exon"]["median"] == 20.0
    assert other.generator["signal"] == 0.2


def test_thresholds_are_the_spec_low_values():
    assert v.KL_THRESHOLDS == pytest.approx({"exon": 0.3, "intron": 0.5})
    assert v.LEARNED_KL_THRESHOLD == 0.3 and v.MEDIAN_REL_TOLERANCE == 0.25
    assert v.LEARNED_KL_GEOMETRIC_FRACTION == 0.5
    assert v.KL_INTERVAL == "basic" and v.CLAIM_DECODER == "viterbi"


# ---- statistics on synthetic inputs with known answers ------------------------------------


def test_bootstrap_interval_of_a_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, size=400)
    res = bootstrap(lambda a: float(a.mean()), x, n_boot=2000, seed=3)
    assert res["estimate"] == pytest.approx(x.mean())
    half = 1.96 * x.std() / np.sqrt(x.size)  # normal-theory half width
    assert res["ci_high"] - res["ci_low"] == pytest.approx(2 * half, rel=0.15)
    assert res["ci_low"] < x.mean() < res["ci_high"]
    # Same resamples as the paired bootstrap against a model whose metric is 0.
    paired = paired_bootstrap(lambda a, _t: float(np.mean(a)), x, np.zeros_like(x), x,
                              n_boot=2000, seed=3)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((paired["ci_low"], paired["ci_high"]))


def _labels(rng, n_seq=30, length=300):
    out = []
    for _ in range(n_seq):
        cuts = np.sort(rng.choice(np.arange(1, length), size=rng.integers(2, 12), replace=False))
        labels = np.zeros(length, dtype=np.int64)
        for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, length])):
            labels[a:b] = i % 3
        out.append(labels)
    return out


def test_boundary_claim_known_answers():
    rng = np.random.default_rng(0)
    true = _labels(rng)
    perfect = boundary_match_counts(true, true, 3)
    shifted = boundary_match_counts([np.roll(t, 1) for t in true], true, 3)  # every boundary off by one
    claim = v.boundary_claim(perfect, shifted, "softmax", n_boot=200)
    assert claim.estimate == pytest.approx(1.0 - claim.details["softmax"])
    assert claim.passed and claim.ci_low > 0
    same = v.boundary_claim(perfect, perfect, "linear", n_boot=200)
    assert same.estimate == 0 and same.ci_low == 0 and same.passed is False
    worse = v.boundary_claim(shifted, perfect, "linear", n_boot=200)
    assert worse.passed is False and worse.ci_high < 0


def test_competence_and_limit_gain_claims_known_answers():
    # per-sequence (matched, n_pred, n_true): F1 1.0, 8/9 and 2/3
    perfect, good, poor = (np.tile(row, (20, 1)) for row in ([10, 10, 10], [8, 8, 10], [5, 5, 10]))
    ok = v.competence_claim("semicrf", good, perfect, n_boot=50)
    assert ok.estimate == pytest.approx(8 / 9) and ok.passed is True
    assert v.competence_claim("linear", poor, perfect, n_boot=50).passed is False
    assert v.competence_claim("linear", poor, None, n_boot=50).passed is None
    # the learned gain equals the limit gain: consistent; twice the limit gain: not
    same = v.limit_gain_claim({"semicrf": good, "linear": poor, "oracle_true": good,
                               "oracle_geometric": poor}, n_boot=50)
    assert same.estimate == pytest.approx(0.0) and same.passed is True
    apart = v.limit_gain_claim({"semicrf": perfect, "linear": poor, "oracle_true": good,
                                "oracle_geometric": poor}, n_boot=50)
    assert apart.estimate == pytest.approx(1 / 9) and apart.passed is False
    assert apart.details["limit_gain"]["estimate"] == pytest.approx(8 / 9 - 2 / 3)
    missing = v.limit_gain_claim({"semicrf": good, "linear": poor}, n_boot=50)
    assert missing.passed is None


def test_duration_histograms_reproduce_evaluate():
    rng = np.random.default_rng(5)
    true, pred = _labels(rng), _labels(rng)
    k = 40
    ht = per_sequence_length_histograms(true, 3, k)
    hp = per_sequence_length_histograms(pred, 3, k)
    expected = evaluate(pred, true, 3, k)["duration_kl"]
    for c, name in enumerate(("intergenic", "exon", "intron")):
        assert pooled_kl(hp[:, c], ht[:, c]) == pytest.approx(expected[name], abs=1e-12)
    # the claims' statistic: log-spaced bins reproduce duration_kl_log
    edges = log_length_edges(300)
    lt, lp = per_sequence_log_histograms(true, 3, edges), per_sequence_log_histograms(pred, 3, edges)
    expected = evaluate(pred, true, 3, k)["duration_kl_log"]
    for c, name in enumerate(("intergenic", "exon", "intron")):
        assert pooled_kl(lp[:, c], lt[:, c]) == pytest.approx(expected[name], abs=1e-12)
    assert lt.sum() == ht.sum()  # every segment counted once


def test_duration_claims_known_answers():
    rng = np.random.default_rng(7)
    true = _labels(rng)
    ht = per_sequence_length_histograms(true, 3, 50)[:, 1]
    exact = v.absolute_kl_claim(ht, ht, "exon", n_boot=100)
    assert exact.estimate == 0 and exact.ci_high == 0 and exact.passed
    # Every predicted exon of length 1: KL ~ log(1/eps) far above the threshold.
    ones = np.zeros_like(ht)
    ones[:, 0] = 5
    bad = v.absolute_kl_claim(ones, ht, "exon", n_boot=100)
    assert bad.estimate > 3 and bad.passed is False
    better = v.duration_comparison_claim(ht, ones, ht, "exon", "softmax", n_boot=100)
    assert better.passed and better.estimate == pytest.approx(bad.estimate)
    assert v.duration_comparison_claim(ones, ht, ht, "exon", "softmax", n_boot=100).passed is False


def test_discrete_median():
    assert v.discrete_median(np.array([0.2, 0.2, 0.2, 0.4])) == 3
    assert v.discrete_median(np.array([0.5, 0.5])) == 1
    assert v.discrete_median(np.array([0, 0, 3.0, 1.0])) == 3  # unnormalised is renormalised


def test_learned_claims_known_answers():
    cfg = GeneratorConfig.from_dict(v.build_experiment("smoke").generator)
    from semicrf.pipeline import true_pmf_table

    truth = true_pmf_table(cfg, 3, 100)
    kl = v.learned_table_claim(truth / truth.sum(0), truth)
    assert kl.estimate == pytest.approx(0, abs=1e-9) and kl.passed
    uniform = np.full_like(truth, 0.01)
    assert not v.learned_table_claim(uniform, truth).passed
    # the best geometric fit (a zero table, tilt-profiled) has exon KL 0.39 < 0.3 + 0.1: it must fail
    from semicrf.metrics import tilt_profiled_pmf

    geometric = v.learned_table_claim(tilt_profiled_pmf(np.zeros_like(truth), truth)[0], truth)
    assert geometric.details["geometric_kl"] == pytest.approx(geometric.estimate)
    assert geometric.threshold == pytest.approx(0.5 * geometric.estimate) and not geometric.passed
    # posterior durations: expected counts (any scale) of complete runs per sequence and length
    def per_seq(pmf, n=20):
        return np.repeat((3.0 * pmf)[None], n, axis=0)

    median = v.posterior_median_claim(per_seq(truth), truth, n_boot=50)
    assert median.passed and median.estimate == 0 and median.ci_high == 0
    assert median.details["true_median"] == 15
    bad = v.posterior_median_claim(per_seq(uniform), truth, n_boot=50)
    assert not bad.passed and bad.details["learned_median"] == 50
    shifted = true_pmf_table(GeneratorConfig.from_dict(v.build_experiment("smoke").shifted_generator),
                             3, 100)
    only = v.posterior_median_claim(per_seq(truth), shifted, prefix="shifted_", n_boot=50)
    assert only.id == "shifted_learned_exon_median" and only.passed is False
    assert v.posterior_median_claim(per_seq(shifted), shifted, prefix="shifted_", n_boot=50).passed
    # sequences that disagree widen the interval: half short, half long exons
    short, long_ = np.zeros_like(truth), np.zeros_like(truth)
    short[13, 1], long_[19, 1] = 1.0, 1.0  # lengths 14 and 20 around the true median 15
    mixed = np.stack([short, long_] * 20)
    wide = v.posterior_median_claim(mixed, truth, n_boot=200)
    assert wide.estimate == pytest.approx(1 / 15)  # the point estimate alone would pass
    assert wide.ci_high == pytest.approx(5 / 15) and not wide.passed


def test_ablation_claim_and_ablated_model():
    rng = np.random.default_rng(0)
    true = _labels(rng)
    perfect = boundary_match_counts(true, true, 3)
    shifted = boundary_match_counts([np.roll(t, 1) for t in true], true, 3)
    claim = v.ablation_claim(perfect, shifted, n_boot=100)
    assert claim.id == "ablation_boundary_f1_drop" and claim.passed
    assert not v.ablation_claim(perfect, perfect, n_boot=100).passed
    # the ablated model keeps encoder, emissions, transitions and start; durations are zero
    import torch

    from semicrf.models import build_model

    torch.manual_seed(0)
    model = build_model("semicrf", input_dim=4, num_labels=3, encoder="bilstm", hidden_dim=4,
                        num_layers=1, max_duration=6, crf_backend="reference")
    with torch.no_grad():
        for param in model.parameters():
            param.normal_()
    ablated = v.ablate_durations(model)
    assert ablated.encoder is model.encoder
    assert torch.equal(ablated.head.transition, model.head.transition)
    assert torch.equal(ablated.head.start, model.head.start)
    assert torch.equal(ablated.head.projection.weight, model.head.projection.weight)
    assert not ablated.head.duration_scores().any() and not ablated.head.tail().any()
    uniform = build_model("semicrf_uniform", input_dim=4, num_labels=3, encoder="bilstm",
                          hidden_dim=4, num_layers=1, max_duration=6, crf_backend="reference")
    uniform.load_state_dict(ablated.state_dict())  # exactly the uniform model's parameters
    x = torch.randn(2, 9, 4)
    lengths = torch.tensor([9, 7])
    assert torch.equal(ablated.decode(x, lengths), uniform.decode(x, lengths))
    assert model.head.duration_scores().abs().sum() > 0  # the original is untouched
    with pytest.raises(ValueError, match="no learned duration"):
        v.ablate_durations(uniform)


def test_stability_claim_known_answers():
    def entry(val, train=None, test=0.5):
        rows = [{"epoch": i + 1, "train_loss": (train or val)[i], "val_loss": x} for i, x in enumerate(val)]
        return {"history": rows, "test_loss": test}

    assert v.stability_claim("m", entry([1.0, 0.8, 0.6])).passed
    assert v.stability_claim("m", entry([1.0, 0.8, 0.6])).estimate == pytest.approx(0.6)
    assert not v.stability_claim("m", entry([1.0, 1.2])).passed
    assert not v.stability_claim("m", entry([1.0, 0.5], train=[1.0, float("nan")])).passed
    assert not v.stability_claim("m", entry([1.0, 0.5], test=None)).passed
    assert not v.stability_claim("m", entry([1.0])).passed


def test_triton_claim_known_answers():
    assert v.triton_claim(None).passed is None
    ref = [1.0, 0.9, 0.8]
    assert v.triton_claim({"reference": ref, "triton": [x * (1 + 1e-6) for x in ref]}).passed
    assert not v.triton_claim({"reference": ref, "triton": [1.0, 0.9, 0.8 * 1.001]}).passed
    assert not v.triton_claim({"reference": ref, "triton": [1.0, 0.9, float("nan")]}).passed


def test_signal_sweep_reuses_the_main_experiment_and_trains_the_rest(tiny_run):
    root, experiment, result = tiny_run
    from semicrf.validation.sweep import SWEEP_MODELS, signal_sweep

    sweep = signal_sweep(TINY, [0.5, 0.3], root, n_boot=50, sharp_windows=0, limit_only=[0.9])
    second, first, limit = sweep["rows"]  # sorted by signal
    assert limit["signal"] == 0.9 and not limit["trained"]
    assert set(limit["oracle"]) == {"true", "geometric"}
    assert not (Path(limit["results_dir"]) / "run").exists()  # nothing trained there
    assert first["results_dir"] == str(result.root)  # signal 0.5 is the main experiment
    assert second["results_dir"] != str(result.root)
    assert set(load_results(second["results_dir"] + "/run")["models"]) == set(SWEEP_MODELS)
    for row in (first, second):
        for b in ("linear",):
            gain = row[f"boundary_f1_gain_vs_{b}"]
            expected = row["semicrf"]["boundary_f1"] - row[b]["boundary_f1"]
            assert gain["estimate"] == pytest.approx(expected)
            assert gain["ci_low"] <= gain["ci_high"]
            near = row[f"boundary_f1_near_gain_vs_{b}"]
            assert near["estimate"] == pytest.approx(
                row["semicrf"]["boundary_f1_near"] - row[b]["boundary_f1_near"])
            assert row[b]["boundary_f1_near"] >= row[b]["boundary_f1"]
            kl = row[f"exon_kl_reduction_vs_{b}"]
            assert kl["estimate"] == pytest.approx(
                row[b]["duration_kl_log"]["exon"] - row["semicrf"]["duration_kl_log"]["exon"], abs=1e-9)
        assert row["ablation_boundary_f1_drop"]["ci_low"] <= row["ablation_boundary_f1_drop"]["ci_high"]
        limit = row["learned_vs_limit_gain"]["details"]["limit_gain"]["estimate"]
        oracle = row["oracle"]
        assert limit == pytest.approx(oracle["true"]["boundary_f1"] - oracle["geometric"]["boundary_f1"])
    assert not sweep["sharp_limit"]
    text = (root / "signal_sweep_tiny.md").read_text()
    assert "| 0.5 |" in text and "| 0.3 |" in text and "within 10 bp" in text
    assert "learned - limit" in text
    assert json.loads((root / "signal_sweep_tiny.json").read_text())["rows"][0]["signal"] == 0.3
    assert "| 0.9 |" in text and "not trained" in text
    assert (root / "signal_sweep_tiny.png").stat().st_size > 1000


def test_sweep_cli_errors_exit_2(tmp_path, capsys):
    from semicrf.validation.sweep import main

    assert main(["--signals", "1.5", "--results-root", str(tmp_path)]) == 2
    assert "signals must lie in [0, 1]" in capsys.readouterr().err
    assert main(["--signals", "0.5", "--limit-only-signals", "0.5",
                 "--results-root", str(tmp_path)]) == 2
    assert "either trained" in capsys.readouterr().err
    assert main(["--sharp-windows", "-1", "--results-root", str(tmp_path)]) == 2
    assert main(["--generator-config", str(tmp_path / "missing.json"),
                 "--results-root", str(tmp_path)]) == 2


def test_pytest_plugin_options_with_a_file_outside_the_repo(tmp_path):
    """`--generator-config /abs/path` (space form) outside the repo reaches the fixture."""
    import subprocess
    import sys

    config = tmp_path / "elsewhere" / "truth.json"
    config.parent.mkdir()
    config.write_text("{}")
    (tmp_path / "test_dummy.py").write_text(
        "def test_options(request):\n"
        f"    assert request.config.getoption('--generator-config') == {str(config)!r}\n"
        "    assert request.config.getoption('--validation-scale') == 'smoke'\n")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_dummy.py",
            "--generator-config", str(config), "--validation-scale", "smoke"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = subprocess.run(args[:-1] + ["medium"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 4 and "invalid choice" in bad.stderr


def test_run_config_decoder_and_duration_form():
    from semicrf.pipeline import RunConfig

    cfg = RunConfig(data_dir="d", output_dir="o", encoder="bilstm", hidden_dim=4, num_layers=1,
                    duration_form="smooth", decoder="posterior")
    cfg.validate()
    model = cfg.train_config("semicrf", 3).build()
    assert model.head.duration_form == "smooth"
    for bad in ({"decoder": "greedy"}, {"duration_form": "spline"}):
        with pytest.raises(ValueError, match="--decoder|--duration-form"):
            RunConfig(data_dir="d", output_dir="o", **bad).validate()
