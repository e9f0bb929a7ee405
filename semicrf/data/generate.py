"""Generate a synthetic genome dataset (train / val / test) and write it to disk.

Seeding: sequence ``i`` of split ``k`` (train 0, val 1, test 2) draws from
``numpy.random.default_rng(SeedSequence(seed, spawn_key=(k, i)))``. Each sequence therefore
depends only on (config, num_classes, seq_length, seed, split, i): changing ``num_train``
does not change the validation or test sequences, and reruns are byte-identical.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from semicrf.data.composition import ProfileTable, sample_tokens
from semicrf.data.config import GeneratorConfig, class_names
from semicrf.data.storage import (
    ALPHABET,
    FORMAT_NAME,
    FORMAT_VERSION,
    SPLITS,
    prepare_output_dir,
    remove_meta,
    tokens_file,
    write_meta,
    write_tokens,
)
from semicrf.data.structure import Structure, sample_structure

log = logging.getLogger(__name__)


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def sequence_rng(seed: int, split_index: int, index: int) -> np.random.Generator:
    """The random generator of sequence ``index`` of split number ``split_index``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, index)))


def generate_sequence(
    config: GeneratorConfig,
    num_classes: int,
    seq_length: int,
    rng: np.random.Generator,
    table: ProfileTable | None = None,
) -> tuple[np.ndarray, Structure]:
    """One sequence: (tokens uint8 (seq_length,), its drawn :class:`Structure`)."""
    structure = sample_structure(config, num_classes, seq_length, rng)
    tokens = sample_tokens(table or ProfileTable(config), structure, rng)
    return tokens, structure


def resolve_config(
    config: GeneratorConfig | Mapping[str, Any] | None, signal: float | None
) -> GeneratorConfig:
    """A :class:`GeneratorConfig` from a config, an overrides dict or None, with ``signal``
    (when given) taking precedence over the config's."""
    if config is None or isinstance(config, Mapping):
        cfg = GeneratorConfig.from_overrides(config)
    elif isinstance(config, GeneratorConfig):
        cfg = config
    else:
        raise ValueError(f"config must be a GeneratorConfig, a dict of overrides or None, "
                         f"got {type(config).__name__}")
    if signal is not None:
        cfg = cfg.with_signal(signal)
    return cfg


def generate_dataset(
    output_dir: str | os.PathLike[str],
    *,
    num_train: int = 1000,
    num_val: int = 200,
    num_test: int = 200,
    seq_length: int = 20000,
    num_classes: int = 3,
    seed: int = 42,
    config: GeneratorConfig | Mapping[str, Any] | None = None,
    signal: float | None = None,
    progress: Callable[[int], Any] | None = None,
) -> Path:
    """Generate the three splits into ``output_dir`` (created if needed) and return its path.

    ``config`` is a :class:`GeneratorConfig`, a dict of overrides of the defaults (see
    :meth:`GeneratorConfig.from_overrides`) or None for the defaults; ``signal`` overrides
    ``config.signal``. ``progress(1)`` is called after every finished sequence (it fits
    ``tqdm.update``).
    Every sequence has exactly ``seq_length`` bases. Raises ``ValueError`` for bad
    arguments, ``NotADirectoryError`` / ``PermissionError`` for an unusable output directory.
    """
    counts = {
        "train": _check_count("num_train", num_train),
        "val": _check_count("num_val", num_val),
        "test": _check_count("num_test", num_test),
    }
    seq_length = _check_count("seq_length", seq_length)
    seed = _check_count("seed", seed, minimum=0)
    names = class_names(num_classes)  # validates: 3 or 5
    cfg = resolve_config(config, signal)
    needed = cfg.min_seq_length(num_classes)
    if seq_length < needed:
        raise ValueError(
            f"seq_length {seq_length} is too small to hold one gene: a leading intergenic "
            f"region (>= {cfg.durations['intergenic'].min}) plus the shortest gene "
            f"(>= {cfg.min_gene_span(num_classes)}) need seq_length >= {needed}"
        )
    out = prepare_output_dir(output_dir)
    remove_meta(out)

    import semicrf  # late import: the package root imports the CRF layer

    table = ProfileTable(cfg)
    t0 = time.perf_counter()
    splits_meta: dict[str, Any] = {}
    for k, split in enumerate(SPLITS):
        n = counts[split]
        tokens = np.empty((n, seq_length), dtype=np.uint8)
        segments, censored, drawn = [], [], []
        for i in range(n):
            tok, structure = generate_sequence(
                cfg, num_classes, seq_length, sequence_rng(seed, k, i), table
            )
            tokens[i] = tok
            segments.append([list(s) for s in structure.segments()])
            censored.append(structure.last_censored)
            drawn.append(structure.last_drawn_length)
            if progress is not None:
                progress(1)
        write_tokens(out, split, tokens)
        splits_meta[split] = {
            "num_sequences": n,
            "tokens_file": tokens_file(split),
            "segments": segments,
            "last_segment_censored": censored,
            "last_segment_drawn_length": drawn,
        }
        log.info("wrote %s: %d sequences x %d bases", split, n, seq_length)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "semicrf_version": semicrf.__version__,
        "seed": seed,
        "seeding": "sequence i of split k (train 0, val 1, test 2) uses "
        "numpy.random.default_rng(SeedSequence(seed, spawn_key=(k, i)))",
        "num_classes": num_classes,
        "class_names": list(names),
        "seq_length": seq_length,
        "alphabet": ALPHABET,
        "generator": cfg.to_dict(),
        "splits": splits_meta,
    }
    write_meta(out, meta)
    log.info("generated %d sequences in %.1f s into %s", sum(counts.values()),
             time.perf_counter() - t0, out)
    return out
