"""Progress for long work: one updating line on a terminal, sparse lines elsewhere."""

import sys
import time


class Progress:
    """Reports named steps; ``tick`` updates the current one.

    On a terminal the current step is one line rewritten in place; in a
    log (CI, a pipe) a tick is printed at most every ``interval`` seconds so
    that a long build still shows it is alive.
    """

    def __init__(self, stream=None, interval=30.0, quiet=False):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.quiet = quiet
        self._t0 = time.monotonic()
        self._last = 0.0
        self._name = None

    def _write(self, text, end="\n"):
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K" + text + end)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, name, what):
        self._name = name
        self._t0 = time.monotonic()
        self._last = self._t0
        self._write(f"[{name}] {what}")

    def tick(self, count, last):
        now = time.monotonic()
        elapsed = now - self._t0
        if self.tty:
            if now - self._last >= 0.2:
                self._last = now
                self._write(f"[{self._name}] {count} files, {_fmt(elapsed)}: {last}"[:150], end="")
        elif now - self._last >= self.interval:
            self._last = now
            self._write(f"[{self._name}] {count} files after {_fmt(elapsed)}, last {last}")

    def note(self, text):
        self._write(f"  {text}")

    def done(self, name, seconds):
        self._write(f"[{name}] done in {_fmt(seconds)}")


def _fmt(seconds):
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60:02d}s"
