"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse

__all__ = ["port"]


def port(text: str) -> int:
    """A TCP port (0 lets the system choose); argparse reports anything else."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value
