"""``semicrf compare``: argument parsing only; the work is done by library functions."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``semicrf compare``."""


def main(args: argparse.Namespace) -> int:
    raise NotImplementedError("semicrf compare is not implemented yet")
