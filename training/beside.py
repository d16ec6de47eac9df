"""Run one piece of training on a second thread while the main thread does another.

implicit's ALS and LightGBM keep both cores busy, but much of the trainer is one-threaded NumPy and
Python (the re-ranker's pools and features, member history, popularity): run beside an ALS fit, that
work takes the core it would leave idle (training/pipeline.py says what runs beside what).

A daemon thread rather than ``concurrent.futures``: the interpreter joins a pool's worker threads at
exit, so a Ctrl-C would wait for a minute-long ALS fit to end before the process could stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Beside(Generic[T]):
    """``Beside(fn, "name")`` starts ``fn()`` now; ``result()`` waits for it and returns its value
    or raises what it raised."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._value: tuple[T] | None = None  # (fn's value,) once it returned
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"beside-{name}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._value = (fn(),)
        except BaseException as e:  # handed to result(): the caller's thread raises it
            self._error = e

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None  # joined, and fn neither raised nor is still running
        return self._value[0]
