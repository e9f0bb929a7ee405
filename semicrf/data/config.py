"""Generator configuration: the ground truth of the synthetic genome, as one validated dataclass.

Every parameter of the generator lives in :class:`GeneratorConfig`. Its JSON form
(:meth:`GeneratorConfig.to_dict`) is what ``semicrf generate --config FILE`` overrides and what
``meta.json`` records. See ``docs/data.md`` for the biological motivation of each default.

Labels (the contract of :func:`semicrf.data.load_split`, defined in :mod:`semicrf.labels`):
0 intergenic, 1 exon, 2 intron (C = 3); 3 5'UTR, 4 3'UTR (C = 5).

Base probabilities are always rows of four numbers in the order A, C, G, T.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semicrf.atomic_io import read_json
from semicrf.labels import CLASS_NAMES, EXON, INTERGENIC, INTRON, UTR3, UTR5

NUM_CLASSES_CHOICES: tuple[int, ...] = (3, 5)
BOUND_MODES: tuple[str, ...] = ("truncate", "clip")

Row = tuple[float, float, float, float]

__all__ = [
    "BOUND_MODES", "CLASS_NAMES", "EXON", "INTERGENIC", "INTRON", "NUM_CLASSES_CHOICES", "UTR3",
    "UTR5", "CountRange", "DurationSpec", "GeneratorConfig", "SiteProfiles", "class_names",
    "label_index",
]


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names of labels ``0 .. num_classes-1``; the generator supports num_classes 3 and 5."""
    if isinstance(num_classes, bool) or num_classes not in NUM_CLASSES_CHOICES:
        raise ValueError(f"num_classes must be 3 or 5, got {num_classes!r}")
    return CLASS_NAMES[:num_classes]


def label_index(label: int | str) -> int:
    """Label id of ``label`` given as an id (0..4) or a class name ("exon", ...)."""
    if isinstance(label, str):
        if label not in CLASS_NAMES:
            raise ValueError(f"unknown class name {label!r}; expected one of {CLASS_NAMES}")
        return CLASS_NAMES.index(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be an int in [0, {len(CLASS_NAMES)}) or a class name, "
                         f"got {label!r}")
    return label


@dataclass(frozen=True)
class DurationSpec:
    """Segment length distribution: LogNormal(log(median), sigma), restricted to [min, max].

    Lengths are integers: a continuous draw x is rounded to the nearest integer. With
    ``bound_mode="truncate"`` (default) x is drawn from the log-normal conditioned on
    rounding into [min, max]; with ``"clip"`` out-of-range values are clamped to the bounds
    (which puts point masses on min and max). :func:`semicrf.data.true_duration_pmf` gives
    the exact integer pmf either way.
    """

    median: float
    sigma: float
    min: int
    max: int

    def validate(self, name: str) -> None:
        """Raise ``ValueError`` naming ``name`` if a parameter is invalid."""
        for key in ("median", "sigma"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"durations.{name}.{key} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"durations.{name}.{key} must be finite and > 0, got {value!r}")
        for key in ("min", "max"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"durations.{name}.{key} must be an integer, got {value!r}")
        if self.min < 1:
            raise ValueError(f"durations.{name}.min must be >= 1, got {self.min}")
        if self.max < self.min:
            raise ValueError(
                f"durations.{name}.max ({self.max}) must be >= durations.{name}.min ({self.min})"
            )


    def bounded_mass(self) -> float:
        """P(min <= rounded draw <= max) before truncation."""

        def cdf(x: float) -> float:
            z = (math.log(x) - math.log(self.median)) / self.sigma
            return 0.5 * math.erfc(-z / math.sqrt(2.0))

        return cdf(self.max + 0.5) - cdf(self.min - 0.5)


@dataclass(frozen=True)
class CountRange:
    """An integer drawn uniformly from ``[min, max]`` (both inclusive)."""

    min: int
    max: int


# Default ground truth. Durations of intergenic / exon / intron are the spec's table; the UTR
# lengths follow human transcript statistics (5'UTR median ~200 bp, 3'UTR median ~800 bp with
# a long tail), scaled to fit in a 20 kb window.
_DEFAULT_DURATIONS: dict[str, DurationSpec] = {
    "intergenic": DurationSpec(median=5000.0, sigma=0.8, min=500, max=20000),
    "exon": DurationSpec(median=150.0, sigma=0.5, min=30, max=500),
    "intron": DurationSpec(median=3000.0, sigma=1.0, min=100, max=10000),
    "utr5": DurationSpec(median=200.0, sigma=0.6, min=20, max=1000),
    "utr3": DurationSpec(median=800.0, sigma=0.8, min=50, max=5000),
}

# Background composition at signal = 1 ("strong" profiles). At the default signal 0.5 each
# row is mixed half-and-half with the uniform distribution, which lands on human-like values:
# coding exons GC ~0.53 with the third codon position GC-richest, introns GC ~0.39,
# intergenic GC ~0.41, 5'UTR GC ~0.60, 3'UTR GC ~0.41.
_DEFAULT_COMPOSITION: dict[str, Row] = {
    "intergenic": (0.34, 0.16, 0.16, 0.34),
    "exon_codon1": (0.25, 0.15, 0.45, 0.15),
    "exon_codon2": (0.35, 0.25, 0.10, 0.30),
    "exon_codon3": (0.10, 0.40, 0.35, 0.15),
    "intron": (0.36, 0.14, 0.14, 0.36),
    "utr5": (0.15, 0.35, 0.35, 0.15),
    "utr3": (0.34, 0.16, 0.16, 0.34),
}

# Position weight matrices of the sites (rows in 5'->3' order), at signal = 1.
_DEFAULT_SITES: dict[str, Any] = {
    # last 3 exon bases before an intron: consensus MAG (M = A/C)
    "donor_exon": ((0.45, 0.45, 0.05, 0.05), (0.85, 0.05, 0.05, 0.05), (0.05, 0.05, 0.85, 0.05)),
    # intron positions +3..+6 (after the GT): consensus RAGT
    "donor_intron": (
        (0.50, 0.025, 0.45, 0.025),
        (0.75, 0.08, 0.10, 0.07),
        (0.05, 0.05, 0.85, 0.05),
        (0.15, 0.10, 0.15, 0.60),
    ),
    # poly-pyrimidine tract, ppt_length bases just before the acceptor_intron rows
    "ppt": (0.10, 0.40, 0.10, 0.40),
    "ppt_length": 16,
    # intron positions -4, -3 (before the AG): consensus NY
    "acceptor_intron": ((0.25, 0.25, 0.25, 0.25), (0.03, 0.75, 0.02, 0.20)),
    # first exon base after an intron: G preferred
    "acceptor_exon": ((0.20, 0.10, 0.60, 0.10),),
    # first 3 bases of a gene's first coding exon: ATG
    "start_codon": ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), (0.0, 0.0, 1.0, 0.0)),
    # last 3 bases of a gene's last coding exon: T(A|G)(A|G) ~ TAA / TAG / TGA
    "stop_codon": ((0.0, 0.0, 0.0, 1.0), (0.67, 0.0, 0.33, 0.0), (0.6, 0.0, 0.4, 0.0)),
    # polyadenylation signal AATAAA inside the 3'UTR (C = 5 only), ending polya_offset
    # bases before the 3'UTR's end
    "polya": (
        (1.0, 0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 1.0),
        (1.0, 0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0, 0.0),
    ),
    "polya_offset": 20,
}

DEFAULT_SIGNAL = 0.5

_SITE_LENGTHS = {
    "donor_exon": 3,
    "donor_intron": 4,
    "acceptor_intron": 2,
    "acceptor_exon": 1,
    "start_codon": 3,
    "stop_codon": 3,
    "polya": 6,
}


def _as_row(value: Any, where: str) -> Row:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"{where} must be a list of 4 probabilities (A, C, G, T), got {value!r}")
    row = []
    for x in value:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
            raise ValueError(f"{where} must hold finite non-negative numbers, got {value!r}")
        row.append(float(x))
    if abs(sum(row) - 1.0) > 1e-6:
        raise ValueError(f"{where} must sum to 1, got {value!r} (sum {sum(row)})")
    return (row[0], row[1], row[2], row[3])


def _as_rows(value: Any, n: int, where: str) -> tuple[Row, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError(f"{where} must be a list of {n} rows of 4 probabilities, got {value!r}")
    return tuple(_as_row(v, f"{where}[{i}]") for i, v in enumerate(value))


def _as_int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class SiteProfiles:
    """Position weight matrices of splice sites, start/stop codons and the polyA signal.

    Each matrix is a tuple of rows (A, C, G, T) in 5'->3' order; see ``docs/data.md``.
    """

    donor_exon: tuple[Row, ...]
    donor_intron: tuple[Row, ...]
    ppt: Row
    ppt_length: int
    acceptor_intron: tuple[Row, ...]
    acceptor_exon: tuple[Row, ...]
    start_codon: tuple[Row, ...]
    stop_codon: tuple[Row, ...]
    polya: tuple[Row, ...]
    polya_offset: int


@dataclass(frozen=True)
class GeneratorConfig:
    """All parameters of the synthetic genome generator (validated on construction).

    - ``durations``: class name -> :class:`DurationSpec` for all five classes (UTRs are only
      used when generating C = 5).
    - ``bound_mode``: "truncate" (default) or "clip", how [min, max] is enforced.
    - ``exons_per_gene``: number of coding exons per gene, uniform on [min, max].
    - ``signal``: in [0, 1], strength of class-specific composition and site profiles;
      0 = uniform bases everywhere except the GT...AG motifs.
    - ``splice_motifs``: every intron starts with GT and ends with AG (independent of signal).
    - ``composition``: background rows at signal 1 (see ``_DEFAULT_COMPOSITION``).
    - ``sites``: :class:`SiteProfiles` at signal 1.
    """

    durations: Mapping[str, DurationSpec] = field(
        default_factory=lambda: dict(_DEFAULT_DURATIONS)
    )
    bound_mode: str = "truncate"
    exons_per_gene: CountRange = CountRange(min=2, max=6)
    signal: float = DEFAULT_SIGNAL
    splice_motifs: bool = True
    composition: Mapping[str, Row] = field(default_factory=lambda: dict(_DEFAULT_COMPOSITION))
    sites: SiteProfiles = field(
        default_factory=lambda: GeneratorConfig._sites_from_dict(_DEFAULT_SITES)
    )

    def __post_init__(self) -> None:
        if set(self.durations) != set(CLASS_NAMES):
            raise ValueError(f"durations must have exactly the keys {CLASS_NAMES}, "
                             f"got {sorted(self.durations)}")
        for name in CLASS_NAMES:
            self.durations[name].validate(name)
            if self.bound_mode == "truncate" and self.durations[name].bounded_mass() < 1e-9:
                d = self.durations[name]
                raise ValueError(
                    f"durations.{name}: [{d.min}, {d.max}] has probability "
                    f"{d.bounded_mass():.3g} under LogNormal(log {d.median}, {d.sigma}); "
                    "truncation to it is numerically meaningless"
                )
        if self.bound_mode not in BOUND_MODES:
            raise ValueError(f"bound_mode must be one of {BOUND_MODES}, got {self.bound_mode!r}")
        lo = _as_int(self.exons_per_gene.min, "exons_per_gene.min", 1)
        hi = _as_int(self.exons_per_gene.max, "exons_per_gene.max", 1)
        if hi < lo:
            raise ValueError(f"exons_per_gene.max ({hi}) must be >= exons_per_gene.min ({lo})")
        s = self.signal
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s <= 1.0:
            raise ValueError(f"signal must be a number in [0, 1], got {s!r}")
        if not isinstance(self.splice_motifs, bool):
            raise ValueError(f"splice_motifs must be true or false, got {self.splice_motifs!r}")
        if set(self.composition) != set(_DEFAULT_COMPOSITION):
            raise ValueError(f"composition must have exactly the keys "
                             f"{sorted(_DEFAULT_COMPOSITION)}, got {sorted(self.composition)}")
        for name, row in self.composition.items():
            _as_row(row, f"composition.{name}")
        if self.splice_motifs and self.durations["intron"].min < 4:
            raise ValueError(
                "durations.intron.min must be >= 4 when splice_motifs is on (GT...AG needs 4 "
                f"bases), got {self.durations['intron'].min}"
            )

    # ---- JSON form -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able nested dict; ``GeneratorConfig.from_dict(c.to_dict()) == c``."""
        s = self.sites
        return {
            "durations": {
                name: {"median": float(d.median), "sigma": float(d.sigma), "min": d.min,
                       "max": d.max}
                for name, d in ((n, self.durations[n]) for n in CLASS_NAMES)
            },
            "bound_mode": self.bound_mode,
            "exons_per_gene": {"min": self.exons_per_gene.min, "max": self.exons_per_gene.max},
            "signal": float(self.signal),
            "splice_motifs": self.splice_motifs,
            "composition": {k: list(self.composition[k]) for k in sorted(self.composition)},
            "sites": {
                "donor_exon": [list(r) for r in s.donor_exon],
                "donor_intron": [list(r) for r in s.donor_intron],
                "ppt": list(s.ppt),
                "ppt_length": s.ppt_length,
                "acceptor_intron": [list(r) for r in s.acceptor_intron],
                "acceptor_exon": [list(r) for r in s.acceptor_exon],
                "start_codon": [list(r) for r in s.start_codon],
                "stop_codon": [list(r) for r in s.stop_codon],
                "polya": [list(r) for r in s.polya],
                "polya_offset": s.polya_offset,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorConfig:
        """Build from a complete dict as produced by :meth:`to_dict` (strict: every key)."""
        default = cls().to_dict()
        _check_same_keys(data, default, "")
        durations = {}
        for name in CLASS_NAMES:
            d = data["durations"][name]
            durations[name] = DurationSpec(median=d["median"], sigma=d["sigma"], min=d["min"],
                                           max=d["max"])
        epg = data["exons_per_gene"]
        return cls(
            durations=durations,
            bound_mode=data["bound_mode"],
            exons_per_gene=CountRange(min=epg["min"], max=epg["max"]),
            signal=data["signal"],
            splice_motifs=data["splice_motifs"],
            composition={k: _as_row(v, f"composition.{k}")
                         for k, v in data["composition"].items()},
            sites=cls._sites_from_dict(data["sites"]),
        )

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None) -> GeneratorConfig:
        """Defaults with ``overrides`` (a nested dict, any subset of :meth:`to_dict`) applied.

        Nested dicts merge key by key (``{"durations": {"exon": {"median": 200}}}`` changes
        one number); lists replace whole rows. Unknown keys raise ``ValueError``.
        """
        merged = cls().to_dict()
        if overrides:
            if not isinstance(overrides, Mapping):
                raise ValueError(f"config overrides must be a JSON object, got {overrides!r}")
            _merge(merged, overrides, "")
        return cls.from_dict(merged)

    def with_signal(self, signal: float) -> GeneratorConfig:
        """A copy with ``signal`` replaced (validated)."""
        data = self.to_dict()
        data["signal"] = signal
        return GeneratorConfig.from_dict(data)

    @staticmethod
    def _sites_from_dict(data: Mapping[str, Any]) -> SiteProfiles:
        rows = {name: _as_rows(data[name], n, f"sites.{name}")
                for name, n in _SITE_LENGTHS.items()}
        return SiteProfiles(
            ppt=_as_row(data["ppt"], "sites.ppt"),
            ppt_length=_as_int(data["ppt_length"], "sites.ppt_length", 0),
            polya_offset=_as_int(data["polya_offset"], "sites.polya_offset", 0),
            **rows,
        )

    # ---- derived quantities ----------------------------------------------------------------

    def duration(self, label: int | str) -> DurationSpec:
        """The :class:`DurationSpec` of a label id or class name."""
        return self.durations[CLASS_NAMES[label_index(label)]]

    def min_gene_span(self, num_classes: int) -> int:
        """Shortest possible gene (UTRs included at C = 5) in bases."""
        class_names(num_classes)
        n = self.exons_per_gene.min
        span = n * self.durations["exon"].min + (n - 1) * self.durations["intron"].min
        if num_classes == 5:
            span += self.durations["utr5"].min + self.durations["utr3"].min
        return span

    def min_seq_length(self, num_classes: int) -> int:
        """Shortest ``seq_length`` that can hold a leading intergenic region and one gene."""
        return self.durations["intergenic"].min + self.min_gene_span(num_classes)


def read_overrides_file(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The JSON object of a generator config file (``semicrf generate --config``, the
    validation's ``--generator-config``), or None for no file. A missing file raises
    ``FileNotFoundError``, invalid JSON or a non-object ``ValueError``, each one line."""
    if path is None:
        return None
    name = os.fspath(path)
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {name!r} not found")
    data = read_json(file, f"config file {name!r}")
    if not isinstance(data, dict):
        raise ValueError(f"config file {name!r} must hold a JSON object, got {type(data).__name__}")
    return data


def _check_same_keys(data: Any, reference: Any, path: str) -> None:
    if not isinstance(reference, dict):
        return
    if not isinstance(data, Mapping):
        raise ValueError(f"config {path or 'root'} must be a JSON object, got {data!r}")
    unknown = sorted(set(data) - set(reference))
    if unknown:
        raise ValueError(f"unknown config key(s) {[_join(path, k) for k in unknown]}; "
                         f"allowed at this level: {sorted(reference)}")
    missing = sorted(set(reference) - set(data))
    if missing:
        raise ValueError(f"missing config key(s) {[_join(path, k) for k in missing]}")
    for key in reference:
        _check_same_keys(data[key], reference[key], _join(path, key))


def _merge(base: dict[str, Any], overrides: Mapping[str, Any], path: str) -> None:
    for key, value in overrides.items():
        where = _join(path, str(key))
        if key not in base:
            raise ValueError(f"unknown config key {where!r}; allowed at this level: "
                             f"{sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ValueError(f"config key {where!r} must be a JSON object, got {value!r}")
            _merge(base[key], value, where)
        else:
            base[key] = copy.deepcopy(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
