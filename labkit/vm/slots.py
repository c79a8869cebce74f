"""A machine-wide cap on lab VMs, shared by every unix user: ``$LABKIT_VM_SLOTS``.

    LABKIT_VM_SLOTS=/run/skb-lab-hub/slots.sock   # the workshop hub's slot broker

A workshop hub runs the slot broker (``labkit.vm.slotbroker``, root) and sets this for
every student's server (unset: no cap). A notebook that goes live holds a *running slot*
for as long as its VM lives, and boots the VM under a *boot slot* (under TCG the boot is the
CPU-heavy part). A slot is a connection to the broker, held open by this process: the broker
frees the slot when the connection closes, however its holder ends (a killed or crashed
kernel too), so there is nothing to clean.

Why a broker: a slot that any user could take by opening a file would let one student hold
them all. The broker identifies each client by its uid (``SO_PEERCRED``, from the kernel) and
gives a uid at most one running slot and one boot slot, however many connections it opens.

- ``running_slot()`` never waits: a held ``Slot``, or ``SlotsFull`` saying why (the caller
  replays instead): "full" (every running slot taken) or "mine" (this user's other notebook
  has the VM; the broker names it).
- ``boot_slot()`` waits first come, first served in the broker's queue, reports "waiting for
  a boot slot: N ahead" whenever that changes and gives up with ``SlotsFull`` ("boot") after
  its timeout.

What bounds one student's VMs beyond the cap is their server's memory limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from pathlib import Path

from labkit.errors import LabError

ENV = "LABKIT_VM_SLOTS"
BOOT_WAIT = 600.0  # s a notebook waits in the boot queue before it gives up
REPLY_WAIT = 10.0  # s for the broker's first answer (it answers at once)
NO_BROKER_FIX = f"the workshop hub runs the slot broker (labkit hub start); or unset {ENV}"


class SlotsFull(LabError):
    """No slot: ``kind`` is "full" (every running slot taken), "mine" (this user
    already has a lab VM) or "boot" (no boot slot within the timeout)."""

    def __init__(self, message, *, kind, fix=None):
        super().__init__(message, fix=fix)
        self.kind = kind


def config(value: str | None = None) -> Path | None:
    """The broker's socket from ``value`` (default: ``$LABKIT_VM_SLOTS``); None when there is no cap."""
    value = os.environ.get(ENV, "") if value is None else str(value)
    if not value:
        return None
    if re.fullmatch(r".*:\d+:\d+", value):
        raise LabError(f"{ENV}={value!r} is the old <dir>:<running>:<booting> form; it is now the slot "
                       "broker's socket", fix=NO_BROKER_FIX)
    if not value.startswith("/"):
        raise LabError(f"{ENV}={value!r} is not the absolute path of the slot broker's socket",
                       fix=f"set it like {ENV}=/run/skb-lab-hub/slots.sock, or unset it for no cap")
    return Path(value)


class Slot:
    """A held slot: ``release()`` it, or use it as a context manager. ``index`` is None when there is no cap."""

    def __init__(self, kind, index=None, sock=None):
        self.kind, self.index, self._sock = kind, index, sock
        self.capped = index is not None

    @property
    def held(self) -> bool:
        return self._sock is not None or not self.capped

    def fileno(self) -> int:
        """The broker connection's fd (to pass to another process that takes the slot over)."""
        return self._sock.fileno()

    def let_go(self):
        """Close this process's copy of the connection without ending it: another process holds it now."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def release(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # a forked child sharing the fd lets go too
            sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def __repr__(self):
        return f"<{self.kind} slot {self.index if self.capped else '(no cap)'}{'' if self.held else ' released'}>"


# -- talking to the broker --------------------------------------------------------------------


class _Request:
    """One request on one connection to the broker, and its reply lines."""

    def __init__(self, path: Path):
        self.path, self.buf = path, b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)  # not into QEMU
        self.sock.settimeout(REPLY_WAIT)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise LabError(f"no lab VM slot broker at {path} ({exc.strerror or exc})", fix=NO_BROKER_FIX) from None

    def ask(self, verb: str):
        nb = os.environ.get("JPY_SESSION_NAME", "").rsplit("/", 1)[-1]
        nb = "".join(ch for ch in nb if ch.isprintable())[:100]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused at once: line() reads why
            self.sock.sendall(f"{verb} {nb}".rstrip().encode(errors="replace") + b"\n")

    def line(self, timeout: float) -> list[str]:
        """The next reply's words; TimeoutError past timeout; a LabError if the broker hung up."""
        while b"\n" not in self.buf:
            if timeout <= 0:
                raise TimeoutError
            self.sock.settimeout(timeout)
            t0 = time.monotonic()
            try:
                chunk = self.sock.recv(1024)
            except TimeoutError:
                raise
            except OSError:
                chunk = b""
            if not chunk or len(self.buf) > 4096:
                self.close()
                raise LabError(f"the lab VM slot broker at {self.path} hung up without an answer",
                               fix=NO_BROKER_FIX)
            self.buf += chunk
            timeout -= time.monotonic() - t0
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace").split(" ")

    def refused(self, words, kind: str):
        """The LabError for a reply that is not a grant."""
        self.close()
        if words[0] == "mine":
            pid, nb = (words[1:2] or ["?"])[0], " ".join(words[2:])
            doing = "running" if kind == "run" else "booting"
            where = f"in {nb}" if nb else f"(process {pid})"
            return SlotsFull(f"you already have a lab VM {doing} {where}", kind="mine",
                             fix="shut that notebook's kernel down and re-run this cell for a live VM here")
        if words[0] == "full":
            return SlotsFull(f"all {(words[1:2] or ['?'])[0]} lab VMs on this server are in use", kind="full",
                             fix="re-run this cell later for a live VM")
        return LabError(f"the lab VM slot broker refused: {' '.join(words)}", fix="re-run this cell later")

    def granted(self, kind, words) -> Slot:
        sock, self.sock = self.sock, None
        sock.settimeout(None)
        return Slot(kind, int(words[1]), sock)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _resolve(cfg) -> Path | None:
    return config() if cfg == "env" else config(str(cfg)) if isinstance(cfg, str) else cfg


# -- running slots --------------------------------------------------------------------


def running_slot(cfg: Path | None | str = "env") -> Slot:
    """A running slot, held until released (at once, never waits); ``SlotsFull`` when none is free.
    cfg: the broker's socket (default: ``$LABKIT_VM_SLOTS``), None for no cap."""
    path = _resolve(cfg)
    if path is None:
        return Slot("run")
    req = _Request(path)
    try:
        req.ask("run")
        words = req.line(REPLY_WAIT)
        if words[0] == "ok":
            return req.granted("run", words)
        raise req.refused(words, "run")
    except TimeoutError:
        raise LabError(f"the lab VM slot broker at {path} did not answer", fix=NO_BROKER_FIX) from None
    finally:
        req.close()  # unless granted: the slot has the connection then


# -- boot slots: the broker's first-come, first-served queue -------------------------------


@contextlib.contextmanager
def boot_slot(progress=None, timeout: float = BOOT_WAIT, cfg: Path | None | str = "env"):
    """Hold a boot slot for the with-block; wait in the broker's queue for one first.

    progress(text) hears "waiting for a boot slot: N ahead ..." each time that changes."""
    path = _resolve(cfg)
    if path is None:
        yield Slot("boot")
        return
    slot = _queue(path, progress or (lambda text: None), timeout)
    try:
        yield slot
    finally:
        slot.release()


def _queue(path: Path, progress, timeout: float) -> Slot:
    req = _Request(path)
    deadline, ahead, booting, first = time.monotonic() + timeout, "0", "?", True
    try:
        req.ask("boot")
        while True:
            try:  # the first answer comes at once, even with no time left to wait
                words = req.line(REPLY_WAIT if first else deadline - time.monotonic())
            except TimeoutError:
                if first:
                    raise LabError(f"the lab VM slot broker at {path} did not answer", fix=NO_BROKER_FIX) from None
                words = None
            first = False
            if words and words[0] == "ok":
                return req.granted("boot", words)
            if words and (words[0] != "wait" or len(words) != 3):
                raise req.refused(words, "boot")
            if words:
                ahead, booting = words[1], words[2]
                progress(f"waiting for a boot slot: {ahead} ahead" if ahead != "0" else
                         f"waiting for a boot slot: 0 ahead, all {booting} in use by VMs booting")
            if words is None or time.monotonic() >= deadline:  # (a timeout of 0: after the first answer)
                raise SlotsFull(f"no boot slot for the lab VM within {timeout:.0f} s ({ahead} notebooks ahead, "
                                f"{booting} booting)", kind="boot", fix="re-run this cell later for a live VM")
    finally:
        req.close()  # leaves the queue (unless granted: the slot has the connection then)
