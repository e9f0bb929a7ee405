"""Project-wide pytest configuration: markers, GPU skipping (validation options: the plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """The validation options live in the package's pytest plugin (``semicrf.pytest_plugin``,
    entry point ``pytest11``); added here only if an outdated install lacks the entry point."""
    if not pluginmanager.has_plugin("semicrf"):
        from semicrf.pytest_plugin import add_options

        add_options(parser)


def _asked_for(config: pytest.Config, marker: str) -> bool:
    """True when ``-m`` selects ``marker`` (a plain ``pytest`` does not train or benchmark)."""
    expr = config.getoption("markexpr") or ""
    return marker in expr and f"not {marker}" not in expr


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Unit tests under tests/ are `fast`; `gpu` tests are skipped without CUDA; `validation`
    (trains models for minutes) and `benchmark` tests run only when ``-m`` asks for them."""
    import torch

    has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    opt_in = {
        name: pytest.mark.skip(reason=f"long-running: select with -m {name}")
        for name in ("validation", "benchmark")
        if not _asked_for(config, name) and not (name == "benchmark" and _benchmark_only(config))
    }
    tests_dir = ROOT / "tests"
    for item in items:
        if tests_dir in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.fast)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        for name, skip in opt_in.items():
            if name in item.keywords:
                item.add_marker(skip)


def _benchmark_only(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("benchmark_only"))
    except ValueError:
        return False
