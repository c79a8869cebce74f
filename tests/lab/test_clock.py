"""The guest keeps the TSC as its clocksource (tsc=reliable): per-packet
times from bpf_ktime_get_ns() need better than the 4 ms of jiffies."""

import time


def test_clocksource_is_the_tsc():
    with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as fh:
        assert fh.read().strip() == "tsc"


def test_monotonic_clock_has_fine_steps():
    steps = []
    for _ in range(20):
        a = time.monotonic_ns()
        b = time.monotonic_ns()
        while b == a:
            b = time.monotonic_ns()
        steps.append(b - a)
    assert min(steps) < 1_000_000, steps
