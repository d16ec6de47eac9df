"""Training subcommands: train, evaluate, tune, synth (registered on the root `mallrec` app)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Placeholder until the commands land; keeps `mallrec --help` working."""
