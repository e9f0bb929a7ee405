"""Per-position input features computed from base codes (A=0 C=1 G=2 T=3 N=4).

- ``onehot`` (5 dims, default): one-hot of A, C, G, T, N.
- ``kmer`` (256 dims): 4-mer frequencies in a window centred on the position. For position t
  the window is the bases ``[t - window/2, t + window/2)`` (default window 32, clipped at the
  sequence ends); every 4-mer lying entirely inside the window and containing no N is
  counted, and the counts are divided by their total, so a row sums to 1 (or is all zero when
  no valid 4-mer fits, e.g. T < 4). 4-mer index = 64*b0 + 16*b1 + 4*b2 + b3 (AAAA = 0,
  TTTT = 255).
- ``onehot+kmer`` (261 dims): both side by side, one-hot first. The window frequencies carry
  the content of the surroundings but blur where a site is; the one-hot keeps each base's
  position exact (a splice site's GT/AG).
"""

from __future__ import annotations

import numpy as np

FEATURE_KINDS: tuple[str, ...] = ("onehot", "kmer", "onehot+kmer")
KMER_K = 4
KMER_WINDOW = 32

_DIMS = {"onehot": 5, "kmer": 4**KMER_K, "onehot+kmer": 5 + 4**KMER_K}


def feature_dim(kind: str) -> int:
    """Number of feature dimensions of ``kind`` ("onehot": 5, "kmer": 256, "onehot+kmer": 261)."""
    if kind not in _DIMS:
        raise ValueError(f"unknown feature kind {kind!r}; expected one of {FEATURE_KINDS}")
    return _DIMS[kind]


def _check_tokens(tokens: np.ndarray) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (not np.issubdtype(tokens.dtype, np.integer) or tokens.min() < 0
                        or tokens.max() > 4):
        raise ValueError("tokens must be integer codes in 0..4 (A, C, G, T, N)")
    return tokens.astype(np.int64, copy=False)


def encode(tokens: np.ndarray, kind: str = "onehot", *, window: int = KMER_WINDOW) -> np.ndarray:
    """Features of one sequence: float32 array of shape (T, feature_dim(kind)).

    ``tokens``: integer codes (T,), A=0 C=1 G=2 T=3 N=4. ``window`` (even, >= 4) is used by
    the kinds with 4-mers only.
    """
    dim = feature_dim(kind)
    tok = _check_tokens(tokens)
    if kind == "onehot":
        return np.eye(dim, dtype=np.float32)[tok]
    if kind == "onehot+kmer":
        return np.concatenate([encode(tok, "onehot"), encode(tok, "kmer", window=window)], axis=1)
    if isinstance(window, bool) or not isinstance(window, int) or window < KMER_K or window % 2:
        raise ValueError(f"window must be an even integer >= {KMER_K}, got {window!r}")
    length = tok.shape[0]
    out = np.zeros((length, dim), dtype=np.float32)
    n = length - KMER_K + 1  # number of 4-mer start positions
    if n <= 0:
        return out
    idx = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    for j in range(KMER_K):
        part = tok[j : j + n]
        idx = idx * 4 + np.minimum(part, 3)
        valid &= part < 4
    # position t counts the 4-mers starting at j = t - half + o, o = 0 .. window - K
    half = window // 2
    t = np.arange(length)
    ts, ks = [], []
    for o in range(window - KMER_K + 1):
        j = t - half + o
        ok = (j >= 0) & (j < n)
        ok[ok] = valid[j[ok]]
        ts.append(t[ok])
        ks.append(idx[j[ok]])
    t_all, k_all = np.concatenate(ts), np.concatenate(ks)
    total = np.bincount(t_all, minlength=length)
    weight = (1.0 / np.maximum(total, 1)).astype(np.float32)[t_all]
    flat = out.reshape(-1)
    np.add.at(flat, t_all * dim + k_all, weight)
    return out
