"""GeneratorConfig: defaults, overrides, strictness and validation of every parameter."""

from __future__ import annotations

import json

import pytest

from semicrf.data import DEFAULT_SIGNAL, CountRange, DurationSpec, GeneratorConfig, read_overrides_file


def test_defaults() -> None:
    cfg = GeneratorConfig()
    assert cfg.signal == DEFAULT_SIGNAL == 0.5
    assert cfg.splice_motifs is True
    assert cfg.exons_per_gene == CountRange(2, 6)
    assert cfg.durations["utr5"] == DurationSpec(200.0, 0.6, 20, 1000)
    assert cfg.durations["utr3"] == DurationSpec(800.0, 0.8, 50, 5000)


def test_dict_round_trip_is_exact_and_json_safe() -> None:
    cfg = GeneratorConfig.from_overrides({"signal": 0.3, "bound_mode": "clip"})
    data = json.loads(json.dumps(cfg.to_dict()))
    assert GeneratorConfig.from_dict(data) == cfg
    assert GeneratorConfig.from_dict(data).to_dict() == cfg.to_dict()


def test_overrides_merge_nested_keys() -> None:
    cfg = GeneratorConfig.from_overrides(
        {"durations": {"exon": {"median": 200}}, "exons_per_gene": {"max": 9},
         "composition": {"intron": [0.4, 0.1, 0.1, 0.4]}, "sites": {"ppt_length": 5}}
    )
    assert cfg.durations["exon"] == DurationSpec(200, 0.5, 30, 500)
    assert cfg.durations["intron"] == GeneratorConfig().durations["intron"]
    assert cfg.exons_per_gene == CountRange(2, 9)
    assert cfg.composition["intron"] == (0.4, 0.1, 0.1, 0.4)
    assert cfg.sites.ppt_length == 5
    assert GeneratorConfig.from_overrides(None) == GeneratorConfig()
    assert GeneratorConfig.from_overrides({}) == GeneratorConfig()


def test_with_signal() -> None:
    cfg = GeneratorConfig().with_signal(0.0)
    assert cfg.signal == 0.0 and cfg.durations == GeneratorConfig().durations
    with pytest.raises(ValueError, match="signal"):
        GeneratorConfig().with_signal(-0.1)


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"durationz": {}}, "durationz"),
        ({"durations": {"cds": {"median": 1}}}, "durations.cds"),
        ({"durations": {"exon": {"mean": 150}}}, "durations.exon.mean"),
        ({"sites": {"tata_box": []}}, "sites.tata_box"),
        ({"composition": {"gc": [0.25] * 4}}, "composition.gc"),
    ],
)
def test_unknown_keys_are_rejected_with_their_path(overrides: dict, where: str) -> None:
    with pytest.raises(ValueError, match=f"unknown config key.*{where}"):
        GeneratorConfig.from_overrides(overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"durations": {"exon": {"sigma": 0}}}, "durations.exon.sigma"),
        ({"durations": {"exon": {"sigma": -1.0}}}, "durations.exon.sigma"),
        ({"durations": {"intron": {"median": 0}}}, "durations.intron.median"),
        ({"durations": {"intron": {"median": float("nan")}}}, "durations.intron.median"),
        ({"durations": {"intron": {"median": "3000"}}}, "durations.intron.median"),
        ({"durations": {"exon": {"min": 0}}}, "durations.exon.min"),
        ({"durations": {"exon": {"min": 30.5}}}, "durations.exon.min"),
        ({"durations": {"exon": {"min": 600}}}, "durations.exon.max"),
        ({"durations": {"exon": {"median": 1e9, "sigma": 0.1}}}, "durations.exon.*probability"),
        ({"durations": {"intron": {"min": 3}}}, "intron.min must be >= 4"),
        ({"bound_mode": "reject"}, "bound_mode"),
        ({"exons_per_gene": {"min": 0}}, "exons_per_gene.min"),
        ({"exons_per_gene": {"min": 5, "max": 3}}, "exons_per_gene.max"),
        ({"signal": 1.5}, "signal"),
        ({"signal": True}, "signal"),
        ({"splice_motifs": "yes"}, "splice_motifs"),
        ({"composition": {"exon_codon1": [0.5, 0.5, 0.5, 0.5]}}, "composition.exon_codon1"),
        ({"composition": {"intron": [0.5, 0.5, 0.0]}}, "composition.intron"),
        ({"composition": {"intron": [1.5, -0.5, 0.0, 0.0]}}, "composition.intron"),
        ({"sites": {"donor_exon": [[0.25] * 4] * 2}}, "sites.donor_exon"),
        ({"sites": {"ppt_length": -1}}, "sites.ppt_length"),
        ({"durations": {"exon": 150}}, "durations.exon"),
    ],
)
def test_invalid_parameters_are_rejected(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig.from_overrides(overrides)


def test_intron_min_below_four_is_allowed_without_motifs() -> None:
    cfg = GeneratorConfig.from_overrides(
        {"splice_motifs": False, "durations": {"intron": {"min": 1}}}
    )
    assert cfg.durations["intron"].min == 1


def test_from_dict_requires_every_key() -> None:
    data = GeneratorConfig().to_dict()
    del data["sites"]["polya"]
    with pytest.raises(ValueError, match="missing config key.*sites.polya"):
        GeneratorConfig.from_dict(data)


def test_min_seq_length_counts_one_intergenic_region_and_the_shortest_gene() -> None:
    cfg = GeneratorConfig()
    # 500 intergenic + 2 exons x 30 + 1 intron x 100 (+ 20 + 50 UTRs at C = 5)
    assert cfg.min_seq_length(3) == 660
    assert cfg.min_seq_length(5) == 730
    with pytest.raises(ValueError, match="num_classes"):
        cfg.min_seq_length(4)


def test_read_overrides_file(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"durations": {"exon": {"median": 300.0, "max": 900}}}))
    assert read_overrides_file(path)["durations"]["exon"]["max"] == 900
    assert read_overrides_file(None) is None
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        read_overrides_file(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_overrides_file(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_overrides_file(tmp_path / "missing.json")
