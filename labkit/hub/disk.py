"""What a student may fill: a home of bounded size, and a /tmp, /var/tmp and /dev/shm of their own.

The home: a filesystem image per student. A user quota would do it on a
filesystem mounted with ``usrquota``, but the root filesystem of a typical
server (and of this build machine: ext4 without quota options) has none,
and remounting / is not the hub's to do. So each student's home is an ext4
image, ``<state>/homes/<user>.img`` (sparse: it takes only what is written,
up to ``--disk``), made at their first spawn (with whatever the home held
copied in) and mounted on their home (loop, ``nosuid,nodev``) until the hub
stops. A student who fills it gets ENOSPC in their own home; the root
filesystem, with the hub's database and log, keeps its space.

The shared scratch directories: a student's server runs in a mount
namespace of its own (``private_tmp()``, in the child between fork and
exec, before it becomes the student) with a tmpfs on /tmp, /var/tmp and
/dev/shm. Its pages are charged to the student's memory cgroup (so
bounded by ``--memory``), no other student sees them, and they are gone
when the last process of the server (its kernels, its VMs) is: nothing a
student wrote there outlives their server. Hence the install must not live
under those directories (``labkit hub setup`` refuses it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")
HOMES = "homes"

_CLONE_NEWNS = 0x20000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000


def image(state, user: str) -> Path:
    return Path(state) / HOMES / f"{user}.img"


def mounts() -> list[tuple[str, str]]:
    """(mount point, source) of every mount this process sees, in mount order."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            out.append((parts[4].encode().decode("unicode_escape"), parts[parts.index("-") + 2]))
    return out


def mount_source(point) -> str | None:
    """The device mounted on exactly this path (the last mount there), or None."""
    point = os.path.realpath(point)
    return next((src for mnt, src in reversed(mounts()) if mnt == point), None)


def backing_file(dev: str) -> str:
    """The file behind a loop device ('' if it is not one)."""
    name = os.path.basename(dev)
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    except OSError:
        return ""


def _run(argv, what):
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed: {(res.stderr or res.stdout).strip()}")


def ensure_home(state, pw, size: int, log=print) -> Path:
    """The student's home on their own image, mounted (made the first time); the image's path."""
    img = image(state, pw.pw_name)
    home = pw.pw_dir
    src = mount_source(home)
    if src and backing_file(src) == str(img):
        return img
    if src:
        raise RuntimeError(f"something else is mounted on {home} ({src})")
    img.parent.mkdir(mode=0o700, exist_ok=True)
    if not img.exists():
        fd = os.open(img, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        try:
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={pw.pw_uid}:{pw.pw_gid}", str(img)],
                 f"making {pw.pw_name}'s home image")
            _copy_in(img, home)
        except BaseException:
            img.unlink(missing_ok=True)
            raise
        log(f"{pw.pw_name}: home image {img} ({size >> 20} MiB)")
    _run(["mount", "-o", "loop,nosuid,nodev,noatime", str(img), home], f"mounting {pw.pw_name}'s home")
    os.chown(home, pw.pw_uid, pw.pw_gid)
    os.chmod(home, 0o700)
    return img


@contextlib.contextmanager
def mounted(img: Path, options: str):
    """A home image mounted on a temporary directory (with ``options``) for the with-block."""
    with tempfile.TemporaryDirectory(prefix="skb-lab-home-") as mnt:
        _run(["mount", "-o", f"loop,{options}", str(img), mnt], f"mounting the home image {img}")
        try:
            yield mnt
        finally:
            _run(["umount", mnt], f"unmounting the home image {img}")


def _copy_in(img: Path, home: str):
    """What the home held before it had an image (useradd's skeleton, an older hub's work): copied in."""
    if not os.path.isdir(home) or not os.listdir(home):
        return
    with mounted(img, "nosuid,nodev") as mnt:
        # -a copies symlinks as symlinks: nothing the student planted is followed.
        _run(["cp", "-a", "--", f"{home}/.", mnt], "copying the home into its image")


def unmount_homes(state) -> list[str]:
    """Unmount every home image of this state directory (at the hub's stop, or after a crash)."""
    done = []
    base = str(Path(state) / HOMES) + "/"
    for point, dev in reversed(mounts()):
        if backing_file(dev).startswith(base):
            res = subprocess.run(["umount", point], capture_output=True, text=True)
            if res.returncode != 0:  # still open in a student's namespace: detach it
                subprocess.run(["umount", "-l", point], capture_output=True, text=True)
            done.append(f"unmounted the home image on {point}")
    return done


def remove_images(state, users) -> list[str]:
    out = []
    for user in users:
        img = image(state, user)
        if img.exists():
            img.unlink()
            out.append(str(img))
    base = Path(state) / HOMES
    if base.is_dir() and not any(base.iterdir()):
        shutil.rmtree(base, ignore_errors=True)
    return out


def private_tmp(size: int):
    """A preexec step (in the child, as root, before it becomes the student): a mount namespace
    of its own with a fresh tmpfs of ``size`` bytes on each of SCRATCH."""
    libc = ctypes.CDLL(None, use_errno=True)

    def enter():
        if libc.unshare(_CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) for the student's /tmp")
        if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "making the student's mounts private")
        for d in SCRATCH:
            if not os.path.isdir(d):
                continue
            opts = f"size={size},mode=1777".encode()
            if libc.mount(b"tmpfs", d.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts) != 0:
                raise OSError(ctypes.get_errno(), f"mounting the student's own {d}")
    return enter
