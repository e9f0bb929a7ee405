"""The validation suite's machinery on a tiny run and on synthetic inputs with known answers.

Decides no scientific claim: it checks the experiment cache, the report fields and the
statistics code (bootstrap, duration histograms, claim rules) that ``pytest -m validation``
relies on.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from semicrf import validation as v
from semicrf.data import GeneratorConfig
from semicrf.metrics import (
    boundary_match_counts,
    evaluate,
    per_sequence_length_histograms,
    pooled_kl,
)
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

    claims = v.decide_claims(result, n_boot=50, check_triton=False)
    assert [c.id for c in claims] == v.claim_ids()
    by_id = {c.id: c for c in claims}
    # One epoch: the final validation loss *is* the first, so the stability rule must fail.
    for model in [*v.MODEL_NAMES, v.SHIFTED_MODEL]:
        assert by_id[f"stable_{model}"].passed is False
        assert by_id[f"stable_{model}"].estimate == pytest.approx(1.0)
    assert by_id["triton_matches_reference"].passed is None
    # The full-sample estimate of a KL claim equals evaluate()'s duration_kl.
    kl = result.payload["models"]["semicrf"]["metrics"]["duration_kl"]["exon"]
    assert by_id["duration_kl_exon_absolute"].estimate == pytest.approx(kl, abs=1e-12)

    paths = v.write_report(result, claims, command="pytest -m fast", session_wall_s=1.5,
                           results_root=root)
    report = json.loads(paths["json"].read_text())
    for key in ("date", "command", "machine", "experiment_wall_s", "experiment", "thresholds",
                "claims", "summary", "models", "plots", "key", "results_dir"):
        assert key in report, key
    assert report["experiment_wall_s"] > 0
    assert sum(report["summary"].values()) == len(v.claim_ids())
    for claim in report["claims"]:
        assert {"id", "statistic", "estimate", "ci_low", "ci_high", "threshold", "rule",
                "verdict"} <= set(claim)
        assert claim["verdict"] in ("PASS", "FAIL", "NOT RUN")
    assert set(report["models"]) == {*v.MODEL_NAMES, v.SHIFTED_MODEL}
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


def test_experiment_key_covers_the_config():
    a = v.build_experiment(TINY)
    assert a.key() == v.build_experiment(TINY).key()
    assert a.key() != v.build_experiment(TINY, {"signal": 0.3}).key()
    assert a.key() != v.build_experiment(v.with_overrides(TINY, epochs=2)).key()
    assert v.build_experiment("cpu").key() != v.build_experiment("full").key()
    with pytest.raises(ValueError, match="unknown validation scale"):
        v.build_experiment("medium")


def test_scaled_ground_truth_and_changed_ground_truth():
    cpu = GeneratorConfig.from_dict(v.build_experiment("cpu").generator)
    d = {n: (cpu.durations[n].median, cpu.durations[n].min, cpu.durations[n].max)
         for n in ("intergenic", "exon", "intron")}
    assert d == {"intergenic": (500, 50, 2000), "exon": (15, 3, 50), "intron": (300, 10, 1000)}
    assert cpu.durations["exon"].sigma == GeneratorConfig().durations["exon"].sigma
    assert (v.SCALES["cpu"].seq_length, v.SCALES["cpu"].max_duration) == (2000, 100)
    assert (v.SCALES["full"].seq_length, v.SCALES["full"].max_duration) == (20000, 1000)
    full = v.build_experiment("full")
    assert full.generator == GeneratorConfig().to_dict()
    shifted = GeneratorConfig.from_dict(v.build_experiment("cpu").shifted_generator).durations["exon"]
    assert (shifted.median, shifted.min, shifted.max) == (30, 6, 100)
    # Overrides are applied to the spec's ground truth, then scaled.
    other = v.build_experiment("cpu", {"durations": {"exon": {"median": 200.0}}, "signal": 0.2})
    assert other.generator["durations"]["exon"]["median"] == 20.0
    assert other.generator["signal"] == 0.2


def test_read_generator_overrides(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"durations": {"exon": {"median": 300.0, "max": 900}}}))
    assert v.read_generator_overrides(path)["durations"]["exon"]["max"] == 900
    assert v.read_generator_overrides(None) is None
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        v.read_generator_overrides(path)
    with pytest.raises(FileNotFoundError):
        v.read_generator_overrides(tmp_path / "missing.json")


def test_thresholds_are_the_spec_midpoints():
    assert v.KL_THRESHOLDS == pytest.approx({"exon": 1.05, "intron": 1.5})
    assert v.LEARNED_KL_THRESHOLD == 0.3 and v.MEDIAN_REL_TOLERANCE == 0.25


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


def test_duration_histograms_reproduce_evaluate():
    rng = np.random.default_rng(5)
    true, pred = _labels(rng), _labels(rng)
    k = 40
    ht = per_sequence_length_histograms(true, 3, k)
    hp = per_sequence_length_histograms(pred, 3, k)
    expected = evaluate(pred, true, 3, k)["duration_kl"]
    for c, name in enumerate(("intergenic", "exon", "intron")):
        assert pooled_kl(hp[:, c], ht[:, c]) == pytest.approx(expected[name], abs=1e-12)


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


def test_learned_pmf_claims_known_answers():
    cfg = GeneratorConfig.from_dict(v.build_experiment("cpu").generator)
    from semicrf.pipeline import true_pmf_table

    truth = true_pmf_table(cfg, 3, 100)
    kl, median = v.learned_pmf_claims(truth / truth.sum(0), truth)
    assert kl.estimate == pytest.approx(0, abs=1e-9) and kl.passed and median.passed
    assert median.details["true_median"] == 15
    uniform = np.full_like(truth, 0.01)
    kl, median = v.learned_pmf_claims(uniform, truth)
    assert not kl.passed and not median.passed and median.details["learned_median"] == 50
    shifted = true_pmf_table(GeneratorConfig.from_dict(v.build_experiment("cpu").shifted_generator), 3, 100)
    (only,) = v.learned_pmf_claims(truth, shifted, prefix="shifted_", with_kl=False)
    assert only.id == "shifted_learned_exon_median" and only.passed is False


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
    sweep = v.signal_sweep(TINY, [0.5, 0.3], root)
    first, second = sweep["rows"]
    assert first["results_dir"] == str(result.root)  # signal 0.5 is the main experiment
    assert second["results_dir"] != str(result.root)
    assert set(v.load_results(second["results_dir"] + "/run")["models"]) == set(v.SWEEP_MODELS)
    for row in sweep["rows"]:
        gain = row["boundary_f1_gain"]
        expected = row["semicrf"]["boundary_f1"] - row["semicrf_uniform"]["boundary_f1"]
        assert gain["estimate"] == pytest.approx(expected)
        assert gain["ci_low"] <= gain["ci_high"]
    text = (root / "signal_sweep_tiny.md").read_text()
    assert "| 0.5 |" in text and "| 0.3 |" in text
    assert json.loads((root / "signal_sweep_tiny.json").read_text())["rows"][1]["signal"] == 0.3
