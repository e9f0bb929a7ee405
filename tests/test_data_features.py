"""Per-position features, the Dataset and the padding-aware collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from semicrf.data import (
    KMER_WINDOW,
    SequenceDataset,
    SequenceRecord,
    collate,
    encode,
    feature_dim,
)


def kmer_brute_force(tokens: np.ndarray, window: int) -> np.ndarray:
    length, half = tokens.size, window // 2
    out = np.zeros((length, 256), dtype=np.float64)
    for t in range(length):
        lo, hi = max(0, t - half), min(length, t + half)  # bases [lo, hi)
        for j in range(lo, hi - 3):
            kmer = tokens[j : j + 4]
            if np.all(kmer < 4):
                out[t, int(kmer[0]) * 64 + int(kmer[1]) * 16 + int(kmer[2]) * 4 + int(kmer[3])] += 1
        if out[t].sum() > 0:
            out[t] /= out[t].sum()
    return out


def test_feature_dims() -> None:
    assert feature_dim("onehot") == 5
    assert feature_dim("kmer") == 256
    with pytest.raises(ValueError, match="feature kind"):
        feature_dim("bpe")


def test_onehot() -> None:
    tokens = np.array([0, 1, 2, 3, 4, 2], dtype=np.uint8)
    x = encode(tokens, "onehot")
    assert x.dtype == np.float32 and x.shape == (6, 5)
    np.testing.assert_array_equal(x.argmax(axis=1), tokens)
    np.testing.assert_array_equal(x.sum(axis=1), 1)


@pytest.mark.parametrize("window", [4, 8, KMER_WINDOW])
def test_kmer_matches_brute_force(window: int) -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 4, size=97).astype(np.uint8)
    tokens[[10, 50, 51]] = 4  # N breaks the 4-mers that contain it
    x = encode(tokens, "kmer", window=window)
    assert x.dtype == np.float32 and x.shape == (97, 256)
    np.testing.assert_allclose(x, kmer_brute_force(tokens, window), atol=1e-6)
    assert np.all((np.abs(x.sum(axis=1) - 1) < 1e-5) | (x.sum(axis=1) == 0))


def test_kmer_known_values() -> None:
    tokens = np.zeros(40, dtype=np.uint8)  # poly-A: only AAAA
    x = encode(tokens, "kmer")
    np.testing.assert_allclose(x[:, 0], 1, rtol=1e-6)
    np.testing.assert_array_equal(x[:, 1:], 0)
    acgt = np.tile(np.array([0, 1, 2, 3], dtype=np.uint8), 10)  # ACGT repeat: 4 distinct 4-mers
    y = encode(acgt, "kmer")[20]
    idx = [0 * 64 + 1 * 16 + 2 * 4 + 3, 1 * 64 + 2 * 16 + 3 * 4 + 0,
           2 * 64 + 3 * 16 + 0 * 4 + 1, 3 * 64 + 0 * 16 + 1 * 4 + 2]
    np.testing.assert_allclose(y[idx].sum(), 1)
    assert np.count_nonzero(y) == 4


def test_kmer_short_and_all_n_sequences_give_zero_rows() -> None:
    assert not encode(np.array([0, 1, 2], dtype=np.uint8), "kmer").any()
    assert not encode(np.full(50, 4, dtype=np.uint8), "kmer").any()
    assert encode(np.array([], dtype=np.uint8), "kmer").shape == (0, 256)


@pytest.mark.parametrize("tokens", [np.array([0, 5]), np.array([[0, 1]]), np.array([0.0, 1.0]),
                                    np.array([-1, 0])])
def test_encode_rejects_bad_tokens(tokens: np.ndarray) -> None:
    with pytest.raises(ValueError, match="tokens"):
        encode(tokens, "onehot")


@pytest.mark.parametrize("window", [3, 5, 0, 2])
def test_encode_rejects_bad_window(window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        encode(np.zeros(10, dtype=np.uint8), "kmer", window=window)


def record(length: int, seed: int) -> SequenceRecord:
    rng = np.random.default_rng(seed)
    cut = length // 2
    return SequenceRecord(
        tokens=rng.integers(0, 4, size=length).astype(np.uint8),
        labels=np.array([0] * cut + [1] * (length - cut), dtype=np.int64),
        segments=[(0, cut, 0), (cut, length, 1)],
        last_segment_censored=True,
        index=seed,
    )


@pytest.mark.parametrize(("kind", "dim"), [("onehot", 5), ("kmer", 256), ("onehot+kmer", 261)])
def test_dataset_items(kind: str, dim: int) -> None:
    recs = [record(30, 0), record(12, 1)]
    ds = SequenceDataset(recs, features=kind)
    assert len(ds) == 2 and ds.feature_dim == dim
    item = ds[1]
    assert item["features"].dtype == torch.float32 and item["features"].shape == (12, dim)
    assert item["labels"].dtype == torch.int64
    assert torch.equal(item["labels"], torch.from_numpy(recs[1].labels))
    np.testing.assert_array_equal(item["features"].numpy(), encode(recs[1].tokens, kind))
    assert item["length"] == 12


def test_dataset_rejects_unknown_features() -> None:
    with pytest.raises(ValueError, match="feature kind"):
        SequenceDataset([record(5, 0)], features="2mer")


def test_collate_pads_features_with_zero_and_labels_with_minus_100() -> None:
    recs = [record(7, 0), record(10, 1), record(3, 2)]
    ds = SequenceDataset(recs)
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["features"].shape == (3, 10, 5) and batch["features"].dtype == torch.float32
    assert batch["labels"].shape == (3, 10) and batch["labels"].dtype == torch.int64
    assert batch["lengths"].tolist() == [7, 10, 3] and batch["lengths"].dtype == torch.int64
    for b, rec in enumerate(recs):
        n = len(rec)
        assert torch.equal(batch["labels"][b, :n], torch.from_numpy(rec.labels))
        assert torch.all(batch["labels"][b, n:] == -100)
        assert torch.equal(batch["features"][b, :n], ds[b]["features"])
        assert torch.all(batch["features"][b, n:] == 0)


def test_collate_works_in_a_dataloader() -> None:
    ds = SequenceDataset([record(8 + i, i) for i in range(5)], features="kmer")
    batches = list(DataLoader(ds, batch_size=2, collate_fn=collate))
    assert [b["lengths"].tolist() for b in batches] == [[8, 9], [10, 11], [12]]
    assert batches[0]["features"].shape == (2, 9, 256)


def test_collate_rejects_empty_and_inconsistent_items() -> None:
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    item = SequenceDataset([record(6, 0)])[0]
    item["length"] = 5
    with pytest.raises(ValueError, match="length"):
        collate([item])


def test_collate_carries_the_censored_flags() -> None:
    import dataclasses

    recs = [dataclasses.replace(record(6, 0), first_segment_censored=True),
            dataclasses.replace(record(4, 1), last_segment_censored=False)]
    batch = collate([SequenceDataset(recs)[i] for i in range(2)])
    assert batch["censored"].dtype == torch.bool
    assert batch["censored"].tolist() == [[True, recs[0].last_segment_censored], [False, False]]


def test_onehot_plus_kmer_is_both_side_by_side() -> None:
    tokens = np.random.default_rng(3).integers(0, 5, size=60).astype(np.uint8)
    both = encode(tokens, "onehot+kmer", window=8)
    np.testing.assert_array_equal(both[:, :5], encode(tokens, "onehot"))
    np.testing.assert_array_equal(both[:, 5:], encode(tokens, "kmer", window=8))
