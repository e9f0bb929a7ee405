"""Run AUGUSTUS (``augustus``, Debian package ``augustus`` + ``augustus-data``) as the peer.

AUGUSTUS treats lower-case bases as soft-masked repeats (it predicts almost no genes in
all-lower-case input), so the input is upper-cased first. The output is GFF3
(``--gff3=on``) without UTRs, read back with :func:`semicrf.genomes.readers.read_gff3`
(``exclude_stop_codon=True`` to compare with a reference whose CDS excludes the stop).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from semicrf.genomes.readers import read_fasta
from semicrf.genomes.writers import write_fasta

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with `apt-get install augustus augustus-data`"


def augustus_binary() -> str:
    """Path of ``augustus``; ``FileNotFoundError`` with the install command if missing."""
    path = shutil.which("augustus")
    if path is None:
        raise FileNotFoundError(f"augustus is not on PATH: {INSTALL_HINT}")
    return path


def augustus_version() -> str:
    """The version AUGUSTUS reports (e.g. ``"3.5.0"``), or ``"unknown"``."""
    proc = subprocess.run([augustus_binary(), "--version"], capture_output=True, text=True)
    match = re.search(r"AUGUSTUS \(([^)]+)\)", proc.stdout + proc.stderr)
    return match.group(1) if match else "unknown"


def run_augustus(
    fasta: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    species: str = "fly",
    strand: str = "forward",
) -> Path:
    """``augustus --species=SPECIES --strand=STRAND --gff3=on --UTR=off`` on the
    upper-cased records of ``fasta``; writes GFF3 to ``output`` and returns its path.

    ``strand="forward"`` matches our models on oriented loci (they predict forward-strand
    genes only); ``"both"`` is AUGUSTUS's default. Raises ``RuntimeError`` with AUGUSTUS's
    last message when it fails.
    """
    if strand not in ("forward", "backward", "both"):
        raise ValueError(f"strand must be forward, backward or both, got {strand!r}")
    binary = augustus_binary()
    out = Path(output)
    upper = write_fasta(out.with_name(out.name + ".input.fa"), read_fasta(fasta))
    tmp = out.with_name(f".{out.name}.tmp")
    cmd = [binary, f"--species={species}", f"--strand={strand}", "--gff3=on", "--UTR=off",
           str(upper)]
    log.info("running %s", " ".join(cmd))
    with open(tmp, "w", encoding="utf-8") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.PIPE, text=True)
    upper.unlink()
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"augustus exited with status {proc.returncode}: {last}")
    os.replace(tmp, out)
    return out
