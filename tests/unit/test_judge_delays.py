"""Exercise 01's delay judgement on made-up event logs (pure logic)."""

from labkit.course.exercises import judge_delays


def packet(p, seq, *, alloc, cgroup, report, value):
    """Events of one packet: storage allocated at tc ingress, cgroup_skb
    ingress, then the socket filter's report (times in us)."""
    return [
        {"kind": "storage_alloc", "packet": p, "map": "stamps", "t_us": alloc, "seq": seq},
        {"kind": "hook", "packet": p, "hook": "cgroup_skb/ingress", "t_us": cgroup, "seq": seq + 1},
        {"kind": "report", "packet": p, "tag": "delay_ns", "t_us": report, "value": value, "seq": seq + 2},
    ]


def log_of(*packets):
    return [e for pk in packets for e in pk]


def test_every_delay_within_its_bounds_passes():
    log = log_of(*(packet(p, 10 * p, alloc=1000 * p, cgroup=1000 * p + 40, report=1000 * p + 60,
                          value=58_000 + p) for p in range(1, 6)))
    ok, lines = judge_delays(log, range(1, 6))
    assert ok, lines
    assert lines[0] == "packet 1: 58.0 us from tc ingress to the socket"


def test_one_packet_short_of_the_lower_bound_is_a_clock_jump_not_a_failure():
    pk = [packet(p, 10 * p, alloc=1000 * p, cgroup=1000 * p + 40, report=1000 * p + 60, value=58_000 + p)
          for p in range(1, 5)]
    pk.append(packet(5, 50, alloc=5000, cgroup=5040, report=9000, value=58_123))  # the clock jumped
    ok, lines = judge_delays(log_of(*pk), range(1, 6))
    assert ok, lines
    assert "1 of 5 packets came up short" in lines[-1]


def test_a_stamp_taken_at_the_socket_fails():
    log = log_of(*(packet(p, 10 * p, alloc=1000 * p, cgroup=1000 * p + 40, report=1000 * p + 60,
                          value=1_000 + p) for p in range(1, 6)))
    ok, lines = judge_delays(log, range(1, 6))
    assert not ok
    assert "too late for most packets" in lines[-1]


def test_a_delay_longer_than_the_packet_took_fails():
    pk = [packet(p, 10 * p, alloc=1000 * p, cgroup=1000 * p + 40, report=1000 * p + 60, value=58_000 + p)
          for p in range(1, 5)]
    pk.append(packet(5, 50, alloc=5000, cgroup=5040, report=5060, value=900_000))
    ok, lines = judge_delays(log_of(*pk), range(1, 6))
    assert not ok
    assert "packet 5: reported 900.0 us, but the kernel took at most 65.0 us" in lines[4]


def test_a_written_in_number_and_a_missing_report_fail():
    log = log_of(*(packet(p, 10 * p, alloc=1000 * p, cgroup=1000 * p + 40, report=1000 * p + 60,
                          value=50_000) for p in range(1, 4)))
    ok, lines = judge_delays(log, range(1, 4))
    assert not ok and "exactly 50000 ns" in lines[-1]
    ok, lines = judge_delays(log, [1, 2, 3, 4])
    assert not ok and lines[3].startswith("packet 4: no delay reported")
