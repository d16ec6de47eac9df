"""training.beside.Beside: work on a second thread, its value or its error handed back."""

import threading

import pytest

from training.beside import Beside


def test_result_is_the_value_and_the_work_ran_on_another_thread():
    main = threading.get_ident()
    work = Beside(lambda: threading.get_ident(), "t")
    assert work.result() != main


def test_runs_while_the_caller_works():
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        assert release.wait(5)
        return "done"

    work = Beside(slow, "t")
    assert started.wait(5)  # it began before result() was asked for
    release.set()
    assert work.result() == "done"


def test_an_error_in_the_work_is_raised_by_result():
    def broken() -> None:
        raise ValueError("bad matrix")

    work = Beside(broken, "t")
    with pytest.raises(ValueError, match="bad matrix"):
        work.result()
