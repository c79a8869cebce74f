"""``labkit demo``: the lab VM up, ``labkit doctor`` and one storage program working.

On the host it prints the doctor report, boots the lab VM and runs
``python -m labkit.demo`` inside; inside it runs the first storage program
(``labkit.runtime.basic``) on three packets and prints what each hook saw.
"""

import os
import secrets
import sys


def run() -> int:
    from labkit import paths
    from labkit.vm import preflight
    from labkit.vm.lab import Lab

    if paths.in_guest():
        return guest()
    print("labkit doctor (host)")
    print(preflight.report(preflight.host_checks()))
    with Lab() as lab:
        print(f"\nlab VM up in {lab.boot_seconds:.1f}s: kernel {lab.release}, accel {lab.accel} ({lab.accel_why})")
        res = lab.run([sys.executable, "-m", "labkit.demo"], cwd=str(paths.PROJECT), stream=True, timeout=300)
    print("\nlab VM stopped.")
    return res.code


def guest() -> int:
    from labkit.runtime.basic import run_basic, timeline
    from labkit.vm import preflight

    print("labkit doctor (guest)")
    print(preflight.report(preflight.guest_checks()))
    tokens = [secrets.randbits(32) | 1 for _ in range(3)]
    run = run_basic(tokens)
    print(f"\nstorage_basic.bpf.o: 3 UDP packets over lo, tokens {', '.join(f'{t:#010x}' for t in tokens)}")
    print("tc ingress writes the packet's token into skb storage; cgroup_skb ingress and")
    print("the socket filter read it back from the same skb:")
    print(timeline(run.events))
    print(f"storages created {run.created}, freed {run.freed_after_recv} once the socket consumed the packets")
    ok = all(e.token == e.pkt_token for e in run.events if e.state in ("present", "created")) and run.events
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("LABKIT_GUEST", "1")
    sys.exit(run())
