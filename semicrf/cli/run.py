"""``semicrf run``: the parser is built from :class:`semicrf.pipeline.RunConfig`; the work is
done by :func:`semicrf.pipeline.run_benchmark`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from typing import Any

from semicrf.pipeline import RunConfig
from semicrf.train import progress_bars


def _option(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one flag per :class:`RunConfig` field (name, type, default, choices, help)."""
    for field in dataclasses.fields(RunConfig):
        meta = field.metadata
        kwargs: dict[str, Any] = {"help": meta["help"], "dest": field.name}
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            kwargs["required"] = True
        elif field.default_factory is not dataclasses.MISSING:  # a tuple: one or more values
            kwargs.update(nargs="+", default=list(field.default_factory()))
        elif isinstance(field.default, bool):
            kwargs["action"] = "store_true"
        else:
            kwargs["default"] = field.default
            if field.default is not None and not isinstance(field.default, str):
                kwargs["type"] = type(field.default)
        if meta["choices"] is not None:
            kwargs["choices"] = meta["choices"]
        parser.add_argument(_option(field), **kwargs)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The :class:`RunConfig` of parsed arguments (lists become tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def main(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from semicrf.pipeline import run_benchmark

    cfg = config_from_args(args)
    if cfg.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    with logging_redirect_tqdm():  # log lines are written above the bars, not through them
        payload = run_benchmark(cfg, progress=progress_bars(cfg.quiet))
    if not payload:  # a torchrun process other than rank 0
        return 0
    summary = {m: {k: round(e["metrics"][k], 4) for k in ("boundary_f1", "segment_f1",
                                                         "position_f1_macro")}
               for m, e in payload["models"].items()}
    print(json.dumps(summary, indent=2))
    print(f"results in {args.output_dir} (metrics.json, duration_comparison.png, "
          "training_curves.png, checkpoints/)")
    return 0
