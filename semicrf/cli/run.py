"""``semicrf run``: argument parsing only; the work is done by library functions."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``semicrf run``."""


def main(args: argparse.Namespace) -> int:
    raise NotImplementedError("semicrf run is not implemented yet")
