"""generate_dataset -> files -> load_split / read_meta, reproducibility and errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import semicrf
from semicrf.data import (
    GeneratorConfig,
    generate_dataset,
    generate_sequence,
    load_split,
    read_meta,
    sequence_rng,
)

SMALL = {"num_train": 5, "num_val": 3, "num_test": 2, "seq_length": 3000}


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("num_classes", [3, 5])
def test_round_trip(tmp_path: Path, num_classes: int) -> None:
    overrides = {"signal": 0.8, "durations": {"intergenic": {"median": 800.0, "min": 100}}}
    out = generate_dataset(tmp_path / "d", **SMALL, num_classes=num_classes, seed=7,
                           config=overrides)
    assert out == tmp_path / "d"
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json", "test.tokens.npy", "train.tokens.npy", "val.tokens.npy"]
    cfg = GeneratorConfig.from_overrides(overrides)
    meta = read_meta(out)
    assert meta["num_classes"] == num_classes
    assert meta["class_names"] == ["intergenic", "exon", "intron", "utr5", "utr3"][:num_classes]
    assert meta["seed"] == 7 and meta["seq_length"] == 3000
    assert meta["semicrf_version"] == semicrf.__version__
    assert meta["generator"] == cfg.to_dict()
    assert GeneratorConfig.from_dict(meta["generator"]) == cfg
    for k, (split, n) in enumerate((("train", 5), ("val", 3), ("test", 2))):
        records = load_split(out, split)
        assert len(records) == n == meta["splits"][split]["num_sequences"]
        for i, rec in enumerate(records):
            tok, st = generate_sequence(cfg, num_classes, 3000, sequence_rng(7, k, i))
            assert rec.tokens.dtype == np.uint8 and rec.tokens.shape == (3000,)
            np.testing.assert_array_equal(rec.tokens, tok)
            assert rec.segments == st.segments()
            assert rec.labels.dtype == np.int64 and rec.labels.shape == (3000,)
            expanded = np.concatenate([np.full(e - s, c) for s, e, c in rec.segments])
            np.testing.assert_array_equal(rec.labels, expanded)
            assert rec.last_segment_censored == st.last_censored
            assert meta["splits"][split]["last_segment_drawn_length"][i] == st.last_drawn_length
            assert rec.index == i and len(rec) == 3000


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", **SMALL, num_classes=5, seed=3)
    b = generate_dataset(tmp_path / "b", **SMALL, num_classes=5, seed=3)
    assert digest(a) == digest(b)
    again = generate_dataset(tmp_path / "a", **SMALL, num_classes=5, seed=3)  # overwrite
    assert digest(again) == digest(b)
    c = generate_dataset(tmp_path / "c", **SMALL, num_classes=5, seed=4)
    assert digest(c)["train.tokens.npy"] != digest(a)["train.tokens.npy"]


def test_splits_do_not_depend_on_the_other_split_sizes(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", **SMALL, seed=1)
    b = generate_dataset(tmp_path / "b", **{**SMALL, "num_train": 9}, seed=1)
    for split in ("val", "test"):
        for ra, rb in zip(load_split(a, split), load_split(b, split), strict=True):
            np.testing.assert_array_equal(ra.tokens, rb.tokens)
            assert ra.segments == rb.segments
    # and the train split is a prefix
    np.testing.assert_array_equal(load_split(b, "train")[4].tokens,
                                  load_split(a, "train")[4].tokens)
    # whereas val and train sequences differ from each other
    assert not np.array_equal(load_split(a, "val")[0].tokens, load_split(a, "train")[0].tokens)


def test_signal_argument_overrides_the_config(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "d", **SMALL, seed=0, config={"signal": 0.9}, signal=0.1)
    assert read_meta(out)["generator"]["signal"] == 0.1


def test_progress_is_reported_per_sequence(tmp_path: Path) -> None:
    calls: list[int] = []
    generate_dataset(tmp_path / "d", **SMALL, seed=0, progress=calls.append)
    assert calls == [1] * 10


def test_output_dir_is_created_with_parents(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "x" / "y", **SMALL, seed=0)
    assert (out / "meta.json").is_file()


# ---- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["num_train", "num_val", "num_test", "seq_length"])
@pytest.mark.parametrize("value", [0, -5, 2.0, True])
def test_non_positive_counts_are_rejected(tmp_path: Path, name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        generate_dataset(tmp_path / "d", **{**SMALL, name: value}, seed=0)
    assert not (tmp_path / "d").exists()  # nothing is created for bad arguments


def test_bad_seed_and_num_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_dataset(tmp_path / "d", **SMALL, seed=-1)
    with pytest.raises(ValueError, match="num_classes"):
        generate_dataset(tmp_path / "d", **SMALL, num_classes=4, seed=0)


@pytest.mark.parametrize("num_classes", [3, 5])
def test_seq_length_must_hold_one_gene(tmp_path: Path, num_classes: int) -> None:
    need = GeneratorConfig().min_seq_length(num_classes)
    with pytest.raises(ValueError, match=f"too small to hold one gene.*>= {need}"):
        generate_dataset(tmp_path / "d", **{**SMALL, "seq_length": need - 1},
                         num_classes=num_classes, seed=0)
    out = generate_dataset(tmp_path / "d", **{**SMALL, "seq_length": need},
                           num_classes=num_classes, seed=0)
    assert read_meta(out)["seq_length"] == need


def test_unknown_config_keys_and_invalid_distributions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown config key 'durations.exon.mu'"):
        generate_dataset(tmp_path / "d", **SMALL, seed=0, config={"durations": {"exon": {"mu": 5}}})
    with pytest.raises(ValueError, match="durations.intron.sigma"):
        generate_dataset(tmp_path / "d", **SMALL, seed=0,
                         config={"durations": {"intron": {"sigma": -1}}})
    with pytest.raises(ValueError, match="config must be"):
        generate_dataset(tmp_path / "d", **SMALL, seed=0, config=[1, 2])  # type: ignore[arg-type]


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        generate_dataset(file, **SMALL, seed=0)
    with pytest.raises(NotADirectoryError, match="not a directory"):
        generate_dataset(file / "sub", **SMALL, seed=0)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions are not enforced for root")
def test_unwritable_output_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            generate_dataset(locked, **SMALL, seed=0)
        with pytest.raises(PermissionError, match="cannot create"):
            generate_dataset(locked / "sub", **SMALL, seed=0)
    finally:
        locked.chmod(0o755)


def test_unwritable_output_dir_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As above, for runs as root: the write probe fails as it would without permission."""
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(PermissionError, match="not writable"):
        generate_dataset(tmp_path / "d", **SMALL, seed=0)


def test_load_split_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_split(tmp_path / "missing", "train")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_split(tmp_path, "train")
    out = generate_dataset(tmp_path / "d", **SMALL, seed=0)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_split(out, "dev")
    np.save(out / "val.tokens.npy", np.zeros((3, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="meta.json says"):
        load_split(out, "val")
    (out / "test.tokens.npy").unlink()
    with pytest.raises(FileNotFoundError, match="test"):
        load_split(out, "test")
    (out / "meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a semicrf-synthetic-genome"):
        read_meta(out)
    (out / "meta.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_meta(out)


def test_meta_json_is_written_last_and_removed_first(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = generate_dataset(tmp_path / "d", **SMALL, seed=0)
    before = digest(out)

    def broken_save(fh, *args: object, **kwargs: object) -> None:
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        generate_dataset(out, **SMALL, seed=1)
    # an interrupted rewrite never looks complete, and no half-written file replaces a good one
    assert not (out / "meta.json").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "test.tokens.npy", "train.tokens.npy", "val.tokens.npy"]
    assert digest(out)["train.tokens.npy"] == before["train.tokens.npy"]


def _edit_meta(out: Path, edit) -> None:
    meta = json.loads((out / "meta.json").read_text())
    edit(meta)
    (out / "meta.json").write_text(json.dumps(meta))


def _train(meta: dict) -> dict:
    return meta["splits"]["train"]


@pytest.mark.parametrize("edit,needle", [
    (lambda m: _train(m)["segments"].pop(),
     r"splits\.train\.segments must list one entry per sequence \(5\), got 4"),
    (lambda m: _train(m)["last_segment_censored"].pop(), r"last_segment_censored must list"),
    (lambda m: _train(m).update(first_segment_censored=[False]), r"first_segment_censored must list"),
    (lambda m: _train(m).update(first_segment_censored=[0] * 5), r"true/false"),
    (lambda m: _train(m)["segments"][2].pop(), r"segments\[2\]: segments do not tile"),
    (lambda m: _train(m)["segments"][1][0].__setitem__(2, 7), r"segments\[1\] has a label outside"),
    (lambda m: _train(m)["segments"].__setitem__(0, [[0, "x"]]), r"segments\[0\] must be a list"),
    (lambda m: _train(m).pop("num_sequences"), r"num_sequences must be an integer"),
    (lambda m: m.update(seq_length="3000"), r"seq_length must be a positive integer"),
    (lambda m: m.pop("splits"), r"no 'splits' object"),
])
def test_malformed_meta_gives_one_line_naming_the_file(tmp_path: Path, edit, needle: str) -> None:
    out = generate_dataset(tmp_path / "d", **SMALL, seed=0)
    _edit_meta(out, edit)
    with pytest.raises(ValueError, match=needle) as err:
        load_split(out, "train")
    assert "\n" not in str(err.value) and str(out / "meta.json") in str(err.value)


def test_truncated_or_bad_token_files(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "d", **SMALL, seed=0)
    data = (out / "train.tokens.npy").read_bytes()
    (out / "train.tokens.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="train.tokens.npy"):
        load_split(out, "train")
    (out / "val.tokens.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="val.tokens.npy.*not a readable .npy"):
        load_split(out, "val")
    np.save(out / "test.tokens.npy", np.full((2, 3000), 9, dtype=np.uint8))
    with pytest.raises(ValueError, match="base codes above 4"):
        load_split(out, "test")


def test_first_segment_censored_is_optional(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "d", **SMALL, seed=0)
    assert not any(r.first_segment_censored for r in load_split(out, "train"))
    _edit_meta(out, lambda m: _train(m).update(
        first_segment_censored=[True, False, True, False, False]))
    records = load_split(out, "train")
    assert [r.first_segment_censored for r in records] == [True, False, True, False, False]
    assert [r.last_segment_censored for r in records] == read_meta(out)["splits"]["train"][
        "last_segment_censored"]
