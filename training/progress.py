"""Progress for long training steps (rich), with per-step timings kept for the manifest."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


def _no_bar(n: int = 1) -> None:
    """A step's ``advance`` when no bar is shown."""


class Steps:
    """`with steps.step("ALS", total=15) as advance: ...` shows a bar, then one done line.

    A step that runs on a second thread beside another (training/beside.py) passes ``bar=False``:
    one terminal shows one live bar, so it says when it starts and when it is done."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, total: int | None = None, bar: bool = True
             ) -> Iterator[Callable[[int], None]]:
        start = time.perf_counter()
        if not bar and not self.quiet:
            self.console.print(f"[dim]… {name} (beside the next steps)[/]", highlight=False)
        if self.quiet or not bar or not self.console.is_terminal:  # logs get the done line, not a bar
            yield _no_bar
        else:
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                          transient=True) as progress:
                task = progress.add_task(name, total=total)

                def advance(n: int = 1) -> None:
                    progress.advance(task, n)

                yield advance
        elapsed = time.perf_counter() - start
        self.timings[name] = round(elapsed, 3)
        if not self.quiet:
            self.console.print(f"[green]✓[/] {name} [dim]({elapsed:.1f}s)[/]", highlight=False)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)
