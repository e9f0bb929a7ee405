"""Sequence content: which base distribution each position is drawn from, and the drawing.

Every position gets a *profile row* (a distribution over A, C, G, T); bases are then drawn
independently, one vectorised draw per sequence. Rows at signal s are

    p = (1 - s) * uniform + s * q        (q: the config's composition / site row)

except the GT...AG splice motif rows, which are deterministic whenever ``splice_motifs`` is on
(so at s = 0 the motifs are the only signal). Layout per segment (later writes win where a
short segment makes them overlap; everything is clipped to the segment):

- intergenic, 5'UTR: background row of the class;
- 3'UTR: background, then the polyA signal ending ``polya_offset`` bases before its end;
- exon: codon rows ``exon_codon{1,2,3}`` cycling with the gene's reading frame (carried across
  introns); the first coding exon starts with the start codon, others with ``acceptor_exon``;
  the last coding exon ends with the stop codon, others with ``donor_exon``;
- intron: background, poly-pyrimidine tract (``ppt_length``) before ``acceptor_intron``
  (positions -4, -3), ``donor_intron`` at +3..+6, and G T ... A G at the ends (motifs).
"""

from __future__ import annotations

import numpy as np

from semicrf.data.config import EXON, INTERGENIC, INTRON, UTR3, UTR5, GeneratorConfig
from semicrf.data.structure import FIRST_EXON, LAST_EXON, Structure


class ProfileTable:
    """All profile rows of a config at its signal: ``probs`` float64 (R, 4) and row ids."""

    def __init__(self, config: GeneratorConfig) -> None:
        s = float(config.signal)
        sites = config.sites
        names: list[str] = []
        rows: list[tuple[float, float, float, float]] = []
        self.ids: dict[str, np.ndarray] = {}

        def add(name: str, qs: tuple[tuple[float, float, float, float], ...]) -> None:
            self.ids[name] = np.arange(len(rows), len(rows) + len(qs), dtype=np.int16)
            names.extend(f"{name}[{i}]" for i in range(len(qs)))
            rows.extend(qs)

        comp = config.composition
        add("intergenic", (comp["intergenic"],))
        add("exon_codon", (comp["exon_codon1"], comp["exon_codon2"], comp["exon_codon3"]))
        add("intron", (comp["intron"],))
        add("utr5", (comp["utr5"],))
        add("utr3", (comp["utr3"],))
        add("donor_exon", sites.donor_exon)
        add("donor_intron", sites.donor_intron)
        add("ppt", (sites.ppt,))
        add("acceptor_intron", sites.acceptor_intron)
        add("acceptor_exon", sites.acceptor_exon)
        add("start_codon", sites.start_codon)
        add("stop_codon", sites.stop_codon)
        add("polya", sites.polya)
        q = np.array(rows, dtype=np.float64)
        mixed = (1.0 - s) * 0.25 + s * q
        # deterministic splice motifs: G T at the intron start, A G at its end
        n_mixed = len(rows)
        motif = np.eye(4, dtype=np.float64)[[2, 3, 0, 2]]
        self.ids["gt"] = np.array([n_mixed, n_mixed + 1], dtype=np.int16)
        self.ids["ag"] = np.array([n_mixed + 2, n_mixed + 3], dtype=np.int16)
        names.extend(["motif_G", "motif_T", "motif_A", "motif_G"])
        self.probs = np.concatenate([mixed, motif])
        self.names = tuple(names)
        cdf = np.cumsum(self.probs, axis=1)
        cdf /= cdf[:, -1:]
        # thresholds for a draw u in [0, 1): base = number of thresholds <= u
        self.thresholds = np.ascontiguousarray(cdf[:, :3])
        self._config = config

    def assign(self, structure: Structure) -> np.ndarray:
        """Profile row of every position of the drawn extent: int16, shape (structure.end[-1],)."""
        cfg = self._config
        sites = cfg.sites
        ids = self.ids
        total = int(structure.end[-1])
        out = np.empty(total, dtype=np.int16)

        def put(a: int, b: int, lo: int, hi: int, row_ids: np.ndarray) -> None:
            # write row_ids (meant for [a, b)) clipped to the segment [lo, hi)
            a2, b2 = max(a, lo), min(b, hi)
            if b2 > a2:
                out[a2:b2] = row_ids[a2 - a : b2 - a]

        codon = ids["exon_codon"]
        for s, e, c, phase, flags in zip(
            structure.start.tolist(), structure.end.tolist(), structure.label.tolist(),
            structure.phase.tolist(), structure.flags.tolist(), strict=True,
        ):
            if c == INTERGENIC:
                out[s:e] = ids["intergenic"][0]
            elif c == UTR5:
                out[s:e] = ids["utr5"][0]
            elif c == UTR3:
                out[s:e] = ids["utr3"][0]
                b = e - sites.polya_offset
                put(b - 6, b, s, e, ids["polya"])
            elif c == EXON:
                out[s:e] = codon[(phase + np.arange(e - s)) % 3]
                if flags & FIRST_EXON:
                    put(s, s + 3, s, e, ids["start_codon"])
                else:
                    put(s, s + 1, s, e, ids["acceptor_exon"])
                if flags & LAST_EXON:
                    put(e - 3, e, s, e, ids["stop_codon"])
                else:
                    put(e - 3, e, s, e, ids["donor_exon"])
            elif c == INTRON:
                out[s:e] = ids["intron"][0]
                n = sites.ppt_length
                put(e - 4 - n, e - 4, s + 2, e, np.full(n, ids["ppt"][0], dtype=np.int16))
                put(e - 4, e - 2, s, e, ids["acceptor_intron"])
                put(s + 2, s + 6, s, e, ids["donor_intron"])
                if cfg.splice_motifs:
                    put(s, s + 2, s, e, ids["gt"])
                    put(e - 2, e, s, e, ids["ag"])
            else:  # pragma: no cover - structure only produces the five labels
                raise AssertionError(f"unexpected label {c}")
        return out

    def draw(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Independent bases for profile ``rows`` (shape (T,)): uint8 codes A=0 C=1 G=2 T=3."""
        u = rng.random(rows.shape[0])
        thr = self.thresholds[rows]
        return (
            (u >= thr[:, 0]).astype(np.uint8)
            + (u >= thr[:, 1]).astype(np.uint8)
            + (u >= thr[:, 2]).astype(np.uint8)
        )


def sample_tokens(table: ProfileTable, structure: Structure, rng: np.random.Generator
                  ) -> np.ndarray:
    """Bases of one sequence: uint8 (structure.seq_length,), codes A=0 C=1 G=2 T=3."""
    rows = table.assign(structure)[: structure.seq_length]
    return table.draw(rows, rng)
