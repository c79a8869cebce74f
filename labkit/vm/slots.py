"""A machine-wide cap on lab VMs, shared by every unix user: ``$LABKIT_VM_SLOTS``.

    LABKIT_VM_SLOTS=/run/labkit/slots:12:2   # at most 12 lab VMs running, 2 of them booting

A workshop hub sets it for every student's server (unset: no cap). A notebook
that goes live holds a *running slot* for as long as its VM lives, and boots
the VM under a *boot slot* (under TCG the boot is the CPU-heavy part). A slot
is an flock on a file in that directory (mode 1777, made by the hub with
``prepare()``; slot files 0666): the kernel drops a lock when its holder
exits, however it exits, so a crashed or killed notebook frees its slot and
there is nothing to clean.

- ``running_slot()`` never waits: a held ``Slot``, or ``SlotsFull`` saying why
  (the caller replays instead).
- One running slot per user: it also locks ``vm-slot.lock`` in the user's own
  cache directory (0700, so no other user can take or fake it); a second
  notebook of the same user is told which notebook has the VM.
- ``boot_slot()`` waits first come, first served: each waiter flocks its own
  ``wait-<arrival>-<pid>`` file, and only a waiter with no live waiter ahead
  of it tries the boot slots. It reports "waiting for a boot slot: N ahead"
  and gives up with ``SlotsFull`` after its timeout.

The cap is cooperative: code that bypasses labkit could flock the files
itself. What bounds one student's VMs is their server's memory limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from labkit import paths
from labkit.errors import LabError

ENV = "LABKIT_VM_SLOTS"
BOOT_WAIT = 600.0  # s a notebook waits in the boot queue before it gives up
USER_LOCK = "vm-slot.lock"


class SlotsFull(LabError):
    """No slot: ``kind`` is "full" (every running slot taken), "mine" (this user
    already has a lab VM) or "boot" (no boot slot within the timeout)."""

    def __init__(self, message, *, kind, fix=None):
        super().__init__(message, fix=fix)
        self.kind = kind


@dataclass(frozen=True)
class Config:
    dir: Path
    running: int
    booting: int


def config(value: str | None = None) -> Config | None:
    """The cap from ``value`` (default: ``$LABKIT_VM_SLOTS``); None when there is none."""
    value = os.environ.get(ENV, "") if value is None else value
    if not value:
        return None
    try:
        d, r, b = value.rsplit(":", 2)
        cfg = Config(Path(d), int(r), int(b))
        if not d or cfg.running < 1 or cfg.booting < 1:
            raise ValueError
    except ValueError:
        raise LabError(f"{ENV}={value!r} is not <dir>:<max running>:<max booting>",
                       fix=f"set it like {ENV}=/run/labkit/slots:12:2, or unset it for no cap") from None
    return cfg


class Slot:
    """A held slot: ``release()`` it, or use it as a context manager. ``index`` is None when there is no cap."""

    def __init__(self, kind, index=None, path=None, fds=()):
        self.kind, self.index, self.path, self._fds = kind, index, path, list(fds)
        self.capped = index is not None

    @property
    def held(self) -> bool:
        return bool(self._fds) or not self.capped

    def release(self):
        while self._fds:
            fd = self._fds.pop()
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)  # for a forked child sharing the fd too
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def __repr__(self):
        return f"<{self.kind} slot {self.index if self.capped else '(no cap)'}{'' if self.held else ' released'}>"


# -- files and locks ----------------------------------------------------------------------


def _open(path: Path, mode=0o666) -> int | None:
    """An fd on the slot file (made ``mode`` if missing), or None when it cannot be a lock file.

    Never follows a symlink or blocks on a FIFO another user left there; opens an
    existing file without O_CREAT (fs.protected_regular refuses O_CREAT on another
    user's file in a sticky directory)."""
    base = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(5):
        try:
            try:
                fd = os.open(path, base | os.O_RDWR)
            except PermissionError:
                fd = os.open(path, base | os.O_RDONLY)  # flock needs no write access
        except FileNotFoundError:
            if not path.parent.is_dir():
                raise LabError(f"the lab VM slot directory {path.parent} does not exist",
                               fix=f"the workshop hub makes it (labkit hub); or unset {ENV}") from None
            try:
                fd = os.open(path, base | os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
                os.fchmod(fd, mode)  # past the umask: every user must be able to open it
            except FileExistsError:
                continue
            except OSError:
                return None
        except OSError:
            return None
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        return None
    return None


def _lock(fd: int, how=None) -> bool:
    """Take a lock on fd without waiting (exclusive unless how says otherwise); False if it is held.
    The default is looked up here, not at import: Pyodide's fcntl has no locks, and labkit (the
    replay path, which never locks) imports this module there."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if how is None else how) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _note(fd: int, **more):
    """Who holds it, for a human reading the file (never trusted: anyone may write it)."""
    info = {"pid": os.getpid(), "uid": os.getuid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"), **more}
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, (" ".join(f"{k}={v}" for k, v in info.items() if v not in ("", None)) + "\n").encode(), 0)


def _read(fd: int) -> dict:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
    return {}


def _take(cfg: Config, kind: str, count: int) -> Slot | None:
    for i in range(count):
        path = cfg.dir / f"{kind}-{i}"
        fd = _open(path)
        if fd is None:
            continue
        if _lock(fd):
            _note(fd)
            return Slot(kind, i, path, [fd])
        os.close(fd)
    return None


# -- running slots --------------------------------------------------------------------


def running_slot(cfg: Config | None | str = "env") -> Slot:
    """A running slot, held until released (at once, never waits); ``SlotsFull`` when none is free."""
    cfg = config() if cfg == "env" else cfg
    if cfg is None:
        return Slot("run")
    mine = _own_lock()
    if mine is None:
        return Slot("run")  # no private cache: the per-user rule cannot apply, the cap still does
    if not _lock(mine):
        who = _read(mine)
        os.close(mine)
        where = f"in {who['notebook']}" if who.get("notebook") else f"(process {who.get('pid', '?')})"
        raise SlotsFull(f"you already have a lab VM running {where}", kind="mine",
                        fix="shut that notebook's kernel down and re-run this cell for a live VM here")
    slot = _take(cfg, "run", cfg.running)
    if slot is None:
        os.close(mine)
        raise SlotsFull(f"all {cfg.running} lab VMs on this server are in use", kind="full",
                        fix="re-run this cell later for a live VM")
    _note(mine, notebook=os.environ.get("JPY_SESSION_NAME", "").rsplit("/", 1)[-1], slot=slot.index)
    slot._fds.append(mine)
    return slot


def _own_lock() -> int | None:
    try:
        d = paths.private_dir(paths.cache_dir())
        return os.open(d / USER_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None


# -- boot slots: a first-come, first-served queue -------------------------------------------


@contextlib.contextmanager
def boot_slot(progress=None, timeout: float = BOOT_WAIT, cfg: Config | None | str = "env", poll: float = 0.25):
    """Hold a boot slot for the with-block; wait in the queue for one first.

    progress(text) hears "waiting for a boot slot: N ahead ..." each time that changes."""
    cfg = config() if cfg == "env" else cfg
    if cfg is None:
        yield Slot("boot")
        return
    slot = _queue(cfg, progress or (lambda text: None), timeout, poll)
    try:
        yield slot
    finally:
        slot.release()


def _queue(cfg: Config, progress, timeout: float, poll: float) -> Slot:
    name, fd = _enqueue(cfg.dir)
    try:
        deadline, said = time.monotonic() + timeout, None
        while True:
            ahead = _alive_ahead(cfg.dir, name)
            if not ahead:
                slot = _take(cfg, "boot", cfg.booting)
                if slot is not None:
                    return slot
            if time.monotonic() >= deadline:
                raise SlotsFull(f"no boot slot for the lab VM within {timeout:.0f} s ({ahead} notebooks ahead, "
                                f"{cfg.booting} booting)", kind="boot", fix="re-run this cell later for a live VM")
            text = (f"waiting for a boot slot: {ahead} ahead" if ahead else
                    f"waiting for a boot slot: 0 ahead, all {cfg.booting} in use by VMs booting")
            if text != said:
                progress(text)
                said = text
            time.sleep(poll)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(cfg.dir / name)  # before the lock goes: nobody sees a dead waiter
        os.close(fd)


def _enqueue(d: Path) -> tuple[str, int]:
    """Join the queue: a locked ``wait-<arrival ns>-<pid>`` file (locked before it gets its name)."""
    if not d.is_dir():
        raise LabError(f"the lab VM slot directory {d} does not exist",
                       fix=f"the workshop hub makes it (labkit hub); or unset {ENV}")
    tmp = d / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    name = f"wait-{time.time_ns():020d}-{os.getpid():010d}"
    os.rename(tmp, d / name)
    return name, fd


def _alive_ahead(d: Path, me: str) -> int:
    """Live waiters that came before ``me``; dead ones of this user are swept."""
    n = 0
    for name in sorted(os.listdir(d)):
        if name >= me and name.startswith("wait-"):
            break
        if not name.startswith(("wait-", ".tmp-")):
            continue
        path = d / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if not _lock(fd, fcntl.LOCK_SH):
                n += name.startswith("wait-")
            elif os.fstat(fd).st_uid == os.getuid() and time.time() - os.fstat(fd).st_mtime > 5:
                with contextlib.suppress(OSError):
                    os.unlink(path)  # a crashed waiter of ours (a fresh .tmp may not be locked yet)
        finally:
            os.close(fd)
    return n


# -- the hub's side ---------------------------------------------------------------------------


def prepare(cfg: Config | str) -> Config:
    """Make the slot directory (1777) and its slot files (0666), owned by the caller (the hub, as root),
    and remove dead waiters. Idempotent."""
    cfg = config(cfg) if isinstance(cfg, str) else cfg
    cfg.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.dir, 0o1777)
    for kind, count in (("run", cfg.running), ("boot", cfg.booting)):
        for i in range(count):
            fd = _open(cfg.dir / f"{kind}-{i}")
            if fd is not None:
                os.close(fd)
    for name in os.listdir(cfg.dir):
        if name.startswith(("wait-", ".tmp-")):
            with contextlib.suppress(OSError):
                fd = os.open(cfg.dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    if _lock(fd, fcntl.LOCK_SH) and time.time() - os.fstat(fd).st_mtime > 5:
                        os.unlink(cfg.dir / name)
                finally:
                    os.close(fd)
    return cfg
