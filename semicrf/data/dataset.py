"""``torch.utils.data`` view of loaded records, with a padding-aware collate function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from semicrf.data.features import KMER_WINDOW, encode, feature_dim
from semicrf.data.storage import SequenceRecord
from semicrf.labels import PAD_LABEL


class SequenceDataset(Dataset):
    """Records as model inputs; features are computed on access (nothing is cached).

    Item ``i`` is a dict: ``features`` float32 tensor (T, D), ``labels`` int64 tensor (T,),
    ``length`` int (T), ``censored`` bool tensor (2,) (first / last run cut by the window,
    from the record). ``features`` is "onehot" (D = 5), "kmer" (D = 256) or "onehot+kmer" (D = 261).
    """

    def __init__(
        self,
        records: Sequence[SequenceRecord],
        features: str = "onehot",
        *,
        kmer_window: int = KMER_WINDOW,
    ) -> None:
        self.records = records
        self.features = features
        self.feature_dim = feature_dim(features)
        self.kmer_window = kmer_window

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        x = encode(rec.tokens, self.features, window=self.kmer_window)
        return {
            "features": torch.from_numpy(x),
            "labels": torch.from_numpy(np.asarray(rec.labels, dtype=np.int64)),
            "length": int(rec.tokens.shape[0]),
            "censored": torch.tensor([rec.first_segment_censored, rec.last_segment_censored]),
        }


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack items of different lengths, padding at the end.

    Returns ``features`` float32 (B, T_max, D) zero-padded, ``labels`` int64 (B, T_max)
    padded with -100 (``PAD_LABEL``), ``lengths`` int64 (B,), ``censored`` bool (B, 2).
    """
    if len(batch) == 0:
        raise ValueError("collate needs at least one item")
    lengths = torch.tensor([int(item["length"]) for item in batch], dtype=torch.int64)
    t_max = int(lengths.max())
    dim = int(batch[0]["features"].shape[1])
    features = torch.zeros(len(batch), t_max, dim, dtype=torch.float32)
    labels = torch.full((len(batch), t_max), PAD_LABEL, dtype=torch.int64)
    for b, item in enumerate(batch):
        n = int(item["length"])
        if item["features"].shape != (n, dim) or item["labels"].shape != (n,):
            raise ValueError(f"item {b}: features {tuple(item['features'].shape)} / labels "
                             f"{tuple(item['labels'].shape)} do not match length {n}, dim {dim}")
        features[b, :n] = item["features"]
        labels[b, :n] = item["labels"]
    censored = torch.stack([torch.as_tensor(item["censored"], dtype=torch.bool) for item in batch])
    return {"features": features, "labels": labels, "lengths": lengths, "censored": censored}
