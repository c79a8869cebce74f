"""The warm Python of a snapshot VM: it imports what a scenario worker needs
once, before the snapshot is taken, and then forks workers that start with
all of it loaded (under TCG those imports take seconds on every cold start).

The agent starts it with fd 3 a SOCK_SEQPACKET socket to the agent. It
answers ``{"ready": true}`` once loaded (``{"error": ...}`` if it could not
load). Then each request is one message ``{"module": name, "argv": [...],
"cwd": path, "env": {...}}`` with three fds attached (the new process's
stdin, stdout and stderr); the answer is ``{"pid": N}`` of a process that
runs ``python -m name argv...`` in a session of its own. That process is
forked twice, so its parent is the agent (PID 1), which reaps it and
reports its exit as for any command. Python's ``random`` reseeds itself
in a forked child from the kernel, which the agent reseeded after the
restore.
"""

import io
import json
import os
import socket
import sys
import traceback


def preload(load_observer=True):
    """The worker's imports; and, in the lab VM, the observer loaded and verified
    (the slowest step of a first run), which every forked worker inherits."""
    from labkit.runtime import observer, worker

    worker.preload()
    path = observer_object()
    if load_observer and path:
        observer.preload(path)


def observer_object():
    """The observer's object file, or None where the BPF objects are not built (a
    workshop install: each student builds their own, and their workers load it)."""
    from labkit.bpf.build import obj_path
    from labkit.errors import BpfBuildError

    try:
        return obj_path("observe")
    except BpfBuildError:
        return None


def run_child(sock, req, fds):
    """In the forked process: become ``python -m module``; never returns."""
    code = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        sock.close()
        os.chdir(req.get("cwd") or "/")
        os.environ.clear()
        os.environ.update(req.get("env") or {})
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      line_buffering=True, write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True, write_through=True)
        import runpy

        sys.argv = [req["module"], *req.get("argv", [])]
        try:
            runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                sys.stderr.write(f"{exc.code}\n")
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - as python itself: print it, exit 1
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def fork_one(sock, req, fds) -> int:
    """Fork twice: the grandchild runs the module, the child exits at once, so
    the grandchild's parent becomes PID 1. Its pid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            grandchild = os.fork()
            if grandchild == 0:
                os.close(w)
                run_child(sock, req, fds)
            os.write(w, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 32)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return int(data)


def serve(sock):
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 3)
        except InterruptedError:
            continue
        if not msg:
            return
        try:
            req = json.loads(msg)
            if len(fds) != 3 or not req.get("module"):
                raise ValueError("a request needs a module and three fds")
            answer = {"pid": fork_one(sock, req, fds)}
        except Exception as exc:  # noqa: BLE001 - answer, keep serving
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(json.dumps(answer).encode())


def loaded_files() -> list:
    """Every file this process has loaded: its modules' sources and bytecode, the
    shared objects mapped (the interpreter, extensions, libbpf through ctypes)."""
    import importlib.util

    files = {sys.executable}
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if not path or not os.path.isfile(path):
            continue
        files.add(path)
        if path.endswith(".py"):
            cached = importlib.util.cache_from_source(path)
            if os.path.isfile(cached):
                files.add(cached)
    with open("/proc/self/maps") as fh:
        for line in fh:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/") and os.path.isfile(fields[5].strip()):
                files.add(fields[5].strip())
    return sorted(files)


def list_files():
    """``--list``: preload as the snapshot's warm Python does, also import what
    the agent uses there (labkit/guest/warm.py), print every file loaded."""
    preload(load_observer=False)  # the host's kernel has no skb storage: only the files are listed
    from labkit.bpf import attach, libbpf  # noqa: F401 - what loading and attaching the observer imports

    if observer_object():
        print(observer_object())
    import binascii  # noqa: F401 - the agent's
    import ctypes  # noqa: F401
    import fcntl  # noqa: F401
    import mmap  # noqa: F401
    import runpy  # noqa: F401
    import select  # noqa: F401
    import struct  # noqa: F401
    import threading  # noqa: F401

    print("\n".join(loaded_files()))


def main():
    if sys.argv[1:] == ["--list"]:
        list_files()
        return
    sock = socket.socket(fileno=3)
    try:
        preload()
    except BaseException:  # noqa: BLE001 - the agent reports it
        sock.send(json.dumps({"error": traceback.format_exc()}).encode())
        raise SystemExit(1) from None
    import threading

    if threading.active_count() != 1:  # a fork copies only the calling thread
        sock.send(json.dumps({"error": f"{threading.active_count()} threads after the preload"}).encode())
        raise SystemExit(1)
    sock.send(json.dumps({"ready": True, "modules": len(sys.modules)}).encode())
    serve(sock)


if __name__ == "__main__":
    main()
