"""A Ctrl-C never splits a namespace switch: it lands right after it."""

import os
import signal
import time

import pytest

from labkit.guest.netns import interrupts_deferred


@pytest.fixture(autouse=True)
def python_sigint_handler():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_a_sigint_inside_the_block_lands_after_it():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler has run by now, and only recorded it
            steps.append("switched")
            time.sleep(0.05)
            steps.append("still switched")
    assert steps == ["switched", "still switched"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_sigint_no_interrupt():
    with interrupts_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):  # and the old handler is back in charge
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
