"""Real genomes: import annotations, predict genes as GFF3, gene-level metrics, AUGUSTUS.

- :mod:`~semicrf.genomes.annotation`: :class:`Transcript` and labels <-> transcripts.
- :mod:`~semicrf.genomes.readers`: GenBank, FASTA and GFF3 readers.
- :mod:`~semicrf.genomes.writers`: GFF3 and FASTA writers.
- :mod:`~semicrf.genomes.importer`: ``semicrf import`` (loci, split, windows).

See ``docs/real_genomes.md``.
"""
