"""The slot broker: the machine-wide cap on lab VMs, kept by one root process (``labkit hub start``).

The hub runs ``Broker(path, running, booting).start()`` and gives every student's server
``LABKIT_VM_SLOTS=<path>``; ``labkit.vm.slots`` is the client. A slot is a connection to the
broker's UNIX socket: granted on it, held while it stays open, freed when it closes, however
the client ends (killed, crashed, its kernel shut down), so there is nothing to clean.

Why a broker and not lock files anyone may open: one student could lock them all. The broker
knows who asks (``SO_PEERCRED``: the kernel says, not the client) and gives each uid (root too)
at most one running slot and one boot slot or place in the boot queue, whatever it sends and
however many connections it opens. A request line past ``max_line`` bytes, or anything but a
request, closes the connection; a uid's connections past ``per_uid`` are closed at once; sends
never block (a client whose unread replies pass ``max_out`` bytes is dropped); an exception
while serving one client drops that client, and the serving thread goes on.

The protocol: one request per connection, one line of UTF-8 ending in ``\\n``::

    run [notebook]      a running slot, at once or never
    boot [notebook]     a boot slot, waiting first come, first served in the broker's queue

``notebook`` (the client's word, untrusted: sanitised, cut to ``NOTEBOOK_CHARS``) names the
holder in the "mine" answer another notebook of that uid gets. Replies, one line each::

    ok <index>              granted: held until the connection closes
    wait <ahead> <booting>  (boot) queued behind <ahead> waiters; again whenever <ahead> changes
    full <running>          (run) all <running> slots are taken; the broker closes
    mine <pid> [notebook]   this uid already holds that kind (or waits for a boot slot), in
                            process <pid>, that notebook; the broker closes
    error <text>            garbage, a line too long, too many connections; the broker closes

A client releases its slot by closing the connection; anything it sends after its request line
ends the connection too. ``python -m labkit.vm.slotbroker PATH RUNNING BOOTING`` serves in the
foreground (outside the hub, e.g. in one pod).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import selectors
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import LabError

MAX_LINE = 512  # bytes of one request line
PER_UID = 8  # connections a uid may have open at once
MAX_OUT = 4096  # bytes of unread replies a client may leave before it is dropped
SNDBUF = 16384  # the kernel's send buffer per client: replies are a few bytes each
NOTEBOOK_CHARS = 80
log = logging.getLogger(__name__)


def sanitise(name: str) -> str:
    """An untrusted notebook name safe to show: letters, digits and a few marks, at most NOTEBOOK_CHARS."""
    return re.sub(r"[^\w .,()+=@-]", "_", name.strip())[:NOTEBOOK_CHARS].strip()


@dataclass(eq=False)
class Client:
    """One connection: who (from SO_PEERCRED), what it asked, and what it holds or waits for."""

    sock: socket.socket
    pid: int
    uid: int
    inbuf: bytes = b""
    out: bytes = b""
    kind: str = ""  # "run", "boot" once it asked
    index: int | None = None  # its slot once granted
    ahead: int | None = None  # the queue position it was last told
    notebook: str = ""
    closed: bool = False


class Broker:
    """Serve ``running`` running slots and ``booting`` boot slots on the UNIX socket ``path``."""

    def __init__(self, path, running: int, booting: int, *, per_uid=PER_UID, max_line=MAX_LINE,
                 max_out=MAX_OUT, sndbuf=SNDBUF):
        if running < 1 or booting < 1:
            raise LabError(f"the slot broker needs 1 running and 1 boot slot or more (got {running}, {booting})")
        self.path, self.running, self.booting = Path(path), running, booting
        self.per_uid, self.max_line, self.max_out, self.sndbuf = per_uid, max_line, max_out, sndbuf
        self.run: list[Client | None] = [None] * running
        self.boot: list[Client | None] = [None] * booting
        self.queue: collections.deque[Client] = collections.deque()
        self.conns: collections.Counter[int] = collections.Counter()  # open connections per uid
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._sel = self._listener = self._thread = self._wake = self._ino = None
        self._stopping = self._pumping = self._repump = False

    # -- start, stop, look ------------------------------------------------------------------

    def start(self) -> Broker:
        """Bind the socket (0666: every user may ask), then serve in a daemon thread."""
        _clear(self.path)
        self._stopping = False
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(str(self.path))
            os.chmod(self.path, 0o666)
            self._ino = os.lstat(self.path).st_ino
            listener.listen(128)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise LabError(f"the slot broker cannot listen on {self.path}: {exc.strerror or exc}",
                           fix="its directory must exist (root-owned, 0755)") from None
        self._listener, self._sel = listener, selectors.DefaultSelector()
        self._wake = socket.socketpair()  # close() wakes the serving thread with a byte
        self._wake[0].setblocking(False)
        self._sel.register(listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake[0], selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name="labkit-slot-broker", daemon=True)
        self._thread.start()
        return self

    def close(self):
        """Stop serving, close every connection (freeing its slot) and remove the socket."""
        if self._thread is None:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake[1].send(b"x")
        self._thread.join(5)
        self._thread = None
        with self._lock:
            for c in list(self._clients):
                self._drop(c)
            with contextlib.suppress(OSError):
                if os.lstat(self.path).st_ino == self._ino:  # ours, not one a later broker made
                    os.unlink(self.path)
            for s in (self._listener, *self._wake):
                s.close()
            self._sel.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def status(self) -> dict:
        """Who holds and waits for what: for the instructor view and the tests."""
        who = lambda c: c and {"uid": c.uid, "pid": c.pid, "notebook": c.notebook}  # noqa: E731
        with self._lock:
            return {"running": [who(c) for c in self.run], "booting": [who(c) for c in self.boot],
                    "waiting": [who(c) for c in self.queue], "connections": dict(+self.conns)}

    # -- serving ------------------------------------------------------------------------------

    def _serve(self):
        while not self._stopping:
            try:
                events = self._sel.select()
            except Exception:  # the loop outlives anything
                log.exception("slot broker: select failed")
                events = []
                time.sleep(0.1)
            with self._lock:
                for key, mask in events:
                    if self._stopping:
                        break
                    try:
                        self._event(key.data, mask)
                    except Exception:  # one client's trouble ends that client only
                        log.exception("slot broker: dropping a client after an error")
                        if isinstance(key.data, Client):
                            with contextlib.suppress(Exception):
                                self._drop(key.data)

    def _event(self, what, mask):
        if what == "wake":
            with contextlib.suppress(OSError):
                self._wake[0].recv(64)
        elif what == "listen":
            self._accept()
        elif not what.closed:
            if mask & selectors.EVENT_WRITE:
                self._flush(what)
            if mask & selectors.EVENT_READ and not what.closed:
                self._read(what)

    def _accept(self):
        for _ in range(64):  # then back to the others: a flood of connects waits its turn
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of fds: the pending ones stay in the backlog
                log.warning("slot broker: accept failed: %s", exc)
                return
            sock.setblocking(False)
            try:
                pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                     struct.calcsize("3i")))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            except OSError:
                sock.close()
                continue
            c = Client(sock, pid, uid)
            if self.conns[uid] >= self.per_uid:
                self._reap([x for x in self._clients if x.uid == uid])
            if self.conns[uid] >= self.per_uid:
                with contextlib.suppress(OSError):
                    sock.send(b"error too many connections of this user\n", socket.MSG_DONTWAIT)
                sock.close()
                continue
            self.conns[uid] += 1
            self._clients.add(c)
            self._sel.register(sock, selectors.EVENT_READ, c)

    def _read(self, c: Client):
        try:
            data = c.sock.recv(self.max_line + 1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data or c.kind:  # gone, or more than its one request: either way it is done
            self._drop(c)
            return
        c.inbuf += data
        line, nl, rest = c.inbuf.partition(b"\n")
        if len(line) > self.max_line or rest or (not nl and len(c.inbuf) > self.max_line):
            self._answer(c, f"error one request line of at most {self.max_line} bytes", close=True)
        elif nl:
            self._request(c, line)

    def _request(self, c: Client, line: bytes):
        try:
            verb, _, arg = line.decode().rstrip("\r").partition(" ")
        except UnicodeDecodeError:
            verb, arg = "", ""
        if verb not in ("run", "boot"):
            self._answer(c, "error not a request (run or boot)", close=True)
            return
        c.kind, c.notebook = verb, sanitise(arg)
        (self._ask_run if verb == "run" else self._ask_boot)(c)

    def _ask_run(self, c: Client):
        if self._mine(c, self.run):
            return
        if None in self.run:
            c.index = self.run.index(None)
            self.run[c.index] = c
            self._answer(c, f"ok {c.index}")
        else:
            self._answer(c, f"full {self.running}", close=True)

    def _ask_boot(self, c: Client):
        if not self._mine(c, [*self.boot, *self.queue]):
            self.queue.append(c)
            self._pump()

    def _mine(self, c: Client, among) -> bool:
        """Whether c's uid already has one of among (the live ones): if so, c hears who, and goes."""
        self._reap([x for x in among if x is not None])
        mine = next((x for x in among if x is not None and not x.closed and x.uid == c.uid), None)
        if mine is not None:
            self._answer(c, f"mine {mine.pid} {mine.notebook}".rstrip(), close=True)
        return mine is not None

    def _pump(self):
        """Grant free boot slots to the head of the queue; tell the others where they are. A client
        dropped on the way (its send failed) changes the queue: then once more, not from inside."""
        if self._pumping:
            self._repump = True
            return
        self._pumping, self._repump = True, True
        try:
            while self._repump:
                self._repump = False
                while self.queue and None in self.boot:
                    c = self.queue.popleft()
                    c.index = self.boot.index(None)
                    self.boot[c.index] = c
                    self._answer(c, f"ok {c.index}")
                for i, c in enumerate(list(self.queue)):
                    if c.ahead != i and not c.closed:
                        c.ahead = i
                        self._answer(c, f"wait {i} {self.booting}")
        finally:
            self._pumping = False

    # -- sending and dropping ------------------------------------------------------------------

    def _answer(self, c: Client, text: str, close=False):
        c.out += text.encode() + b"\n"
        self._flush(c)
        if close and not c.closed:
            self._drop(c)  # what the kernel took is still read by the client before its EOF

    def _flush(self, c: Client):
        try:
            while c.out:
                c.out = c.out[c.sock.send(c.out, socket.MSG_DONTWAIT):]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(c)
            return
        if len(c.out) > self.max_out:
            self._drop(c)  # it does not read: it cannot hold anything up
        elif not c.closed:
            self._sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0), c)

    def _reap(self, clients):
        """Drop those of clients that hung up (or sent more than their request) but whose event is not
        served yet. Data from a client that has not asked yet is its request: it stays."""
        for c in clients:
            try:
                if c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) and not c.kind:
                    continue
            except BlockingIOError:
                continue  # still there, quiet
            except OSError:
                pass
            self._drop(c)

    def _drop(self, c: Client):
        if c.closed:
            return
        c.closed = True
        self._clients.discard(c)
        self.conns[c.uid] -= 1
        with contextlib.suppress(Exception):
            self._sel.unregister(c.sock)
        c.sock.close()
        if c.kind == "run" and c.index is not None and self.run[c.index] is c:
            self.run[c.index] = None
        elif c.kind == "boot":
            if c.index is not None and self.boot[c.index] is c:
                self.boot[c.index] = None
            with contextlib.suppress(ValueError):
                self.queue.remove(c)
            self._pump()


def _clear(path: Path):
    """Make way for the socket: refuse anything at path but a socket nobody listens on (stale: removed)."""
    mode = os.stat(path.parent).st_mode if path.parent.is_dir() else 0
    if not mode or mode & stat.S_IWOTH and not mode & stat.S_ISVTX:  # anyone could swap the socket for theirs
        raise LabError(f"the slot broker's directory {path.parent} is missing or writable by everyone",
                       fix="make it root-owned, mode 0755 (labkit hub start does)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise LabError(f"{path} exists and is not a socket: the slot broker leaves it alone",
                       fix="remove it, or give the broker another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(2)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        try:
            os.unlink(path)  # a stale socket: nobody listens
        except OSError as exc:
            raise LabError(f"cannot remove the stale socket {path}: {exc.strerror}", fix="remove it") from None
        return
    except OSError as exc:
        raise LabError(f"cannot tell whether a slot broker listens on {path}: {exc}", fix="remove it") from None
    finally:
        probe.close()
    raise LabError(f"a slot broker already listens on {path}", fix="stop the other hub first (labkit hub stop)")


def main(argv=None) -> int:
    """``python -m labkit.vm.slotbroker PATH RUNNING BOOTING``: serve until SIGTERM or Ctrl-C."""
    import signal
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or not (args[1] + args[2]).isdigit():
        sys.exit("usage: python -m labkit.vm.slotbroker PATH RUNNING BOOTING")
    logging.basicConfig(level=logging.INFO)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with Broker(args[0], int(args[1]), int(args[2])), contextlib.suppress(KeyboardInterrupt):
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
