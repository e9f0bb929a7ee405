"""Where and with what a run happened: package versions, machine, source commit."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions are recorded with every result.
PACKAGES: tuple[str, ...] = ("semicrf", "torch", "triton", "mamba-ssm", "numpy", "scipy", "pandas")


def package_versions() -> dict[str, str | None]:
    """Versions of Python, the platform and :data:`PACKAGES` (None where not installed)."""
    info: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for dist in PACKAGES:
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    return info


def git_state() -> dict[str, Any] | None:
    """Commit and number of modified tracked files of the source tree, if it is a git checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "modified_files": len(dirty.splitlines())}


def machine_info() -> dict[str, Any]:
    """Host, platform, processor, CPU count, torch threads, accelerator, versions and git state."""
    import torch

    return {
        "host": socket.gethostname(), "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": package_versions(),
        "git": git_state(),
    }
