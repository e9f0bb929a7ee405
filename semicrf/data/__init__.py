"""Synthetic genome data: generator with known ground truth, on-disk format, features.

Public API (see ``docs/data.md``):

- :func:`generate_dataset` writes train / val / test to a directory; :func:`load_split` and
  :func:`read_meta` read it back.
- :class:`GeneratorConfig` holds every generator parameter; :func:`true_duration_pmf`,
  :func:`true_duration_cdf` and :func:`true_duration_binned` give the true length
  distributions.
- :func:`encode` / :func:`feature_dim` compute per-position features ("onehot", "kmer", "onehot+kmer");
  :class:`SequenceDataset` and :func:`collate` feed them to PyTorch.
"""

from semicrf.data.config import (
    CLASS_NAMES,
    DEFAULT_SIGNAL,
    CountRange,
    DurationSpec,
    GeneratorConfig,
    read_overrides_file,
)
from semicrf.data.dataset import SequenceDataset, collate
from semicrf.data.durations import (
    sample_durations,
    true_duration_binned,
    true_duration_cdf,
    true_duration_pmf,
)
from semicrf.data.features import FEATURE_KINDS, KMER_WINDOW, encode, feature_dim
from semicrf.data.generate import generate_dataset, generate_sequence, sequence_rng
from semicrf.data.storage import SPLITS, SequenceRecord, load_split, read_meta

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_SIGNAL",
    "FEATURE_KINDS",
    "KMER_WINDOW",
    "SPLITS",
    "CountRange",
    "DurationSpec",
    "GeneratorConfig",
    "SequenceDataset",
    "SequenceRecord",
    "collate",
    "encode",
    "feature_dim",
    "generate_dataset",
    "generate_sequence",
    "load_split",
    "read_meta",
    "read_overrides_file",
    "sample_durations",
    "sequence_rng",
    "true_duration_binned",
    "true_duration_cdf",
    "true_duration_pmf",
]
