"""Kernel splats in the guest's log: what a test left behind.

A lab test that passes but makes the kernel print a KASAN report, a lockdep
or RCU warning, a ``WARN``, a ``BUG`` or an oops has found a fault, not
passed. ``Kmsg`` reads ``/dev/kmsg`` from where it was opened, and
``find_splats()`` picks the splats out of what it read; ``kmemleak_report()``
asks the debug kernel for a leak scan. ``tests/lab/conftest.py`` turns both
into failures of the test (or test module, for leaks) that caused them.

``find_splats`` is pure logic (tested in ``tests/unit/test_splats.py``);
the rest runs as root in the guest.
"""

import errno
import os
import re
import time

KMEMLEAK = "/sys/kernel/debug/kmemleak"

# The first line of every report the debug options print, and of an oops.
SPLAT_START = re.compile(
    r"^(?:"
    r"WARNING: |BUG: |UBSAN: |Oops|general protection fault|kernel BUG at |Kernel panic|"
    r"INFO: (?:task .* blocked|rcu_\w+ (?:self-)?detected)|"
    r"-+\[ cut here \]-+|"
    r"================================================================+"  # KASAN's and lockdep's banner
    r")"
)
# Lines that end a report.
SPLAT_END = re.compile(r"^(?:---\[ end trace [0-9a-f]+ \]---|={20,})$")
MAX_LINES = 40


def find_splats(lines: list[str]) -> list[str]:
    """The splats in ``lines`` (kernel log messages, oldest first), each as
    one text of at most ``MAX_LINES`` lines, starting at its first line.
    A banner line of ``=`` alone is only a start when a report follows it."""
    splats = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not SPLAT_START.match(line):
            i += 1
            continue
        if line.startswith("=") and not (i + 1 < len(lines) and SPLAT_START.match(lines[i + 1].rstrip())
                                         and not lines[i + 1].startswith("=")):
            i += 1
            continue
        block = [line]
        j = i + 1
        while j < len(lines) and len(block) < MAX_LINES:
            nxt = lines[j].rstrip()
            block.append(nxt)
            j += 1
            if SPLAT_END.match(nxt) and len(block) > 2:
                break
        splats.append("\n".join(block))
        i = j
    return splats


class Kmsg:
    """The kernel log from now on: ``read()`` returns the messages written
    since the last read (or since this was made)."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self) -> list[str]:
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before we read it: go on
                    continue
                raise
            text = rec.decode(errors="replace")
            _, _, msg = text.partition(";")
            # Continuation lines (" KEY=value") carry dictionary fields, not text.
            out.append(msg.split("\n", 1)[0])
        return out

    def splats(self) -> list[str]:
        return find_splats(self.read())

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def debugfs() -> str:
    """Where debugfs is, mounting it when the kernel has it and it is not yet."""
    path = "/sys/kernel/debug"
    if os.path.isdir(path) and not os.listdir(path):
        os.system(f"mount -t debugfs nodev {path} 2>/dev/null")
    return path


def kmemleak_available() -> bool:
    debugfs()
    return os.path.exists(KMEMLEAK)


def kmemleak_clear():
    """Forget every leak reported so far (they belong to earlier work)."""
    if kmemleak_available():
        with open(KMEMLEAK, "w") as fh:
            fh.write("clear")


def kmemleak_report(settle: float = 0.0) -> str:
    """Scan now and return the new suspected leaks (empty when none).

    kmemleak reports only objects older than 5 s; ``settle`` waits first,
    so that what the last test freed late (after an RCU grace period) is
    gone and what it leaked is old enough.
    """
    if not kmemleak_available():
        return ""
    if settle:
        time.sleep(settle)
    # An object is reported when two scans in a row find it unreferenced
    # and unchanged: scan twice, so that a leak shows after the work that
    # made it rather than after the next.
    for _ in range(2):
        with open(KMEMLEAK, "w") as fh:
            fh.write("scan")
    with open(KMEMLEAK) as fh:
        report = fh.read()
    return report.strip()
