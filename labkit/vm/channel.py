"""The host's end of the lab VM's control channel: JSON lines over the QEMU
chardev socket that the guest agent reads from its virtio-serial port."""

import json
import select
import socket
import time


class Channel:
    """JSON lines over the QEMU chardev socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, msg):
        self.sock.sendall((json.dumps(msg) + "\n").encode())

    def recv(self, timeout):
        """One message, or None if none arrived within timeout seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the VM closed the channel")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(path, deadline, alive):
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if not alive() or time.monotonic() > deadline:
                return None
            time.sleep(0.02)
