"""Warm snapshots of the lab VM: which one fits this machine, and whether it is stale.

Under TCG a lab VM spends seconds booting and more importing Python (the
scenario worker's pyroute2 alone takes ~4 s) before it answers. A warm
snapshot is a lab VM saved once that far: booted, its warm Python loaded
(``labkit.runtime.zygote``), its free memory zeroed; a later start restores
it (QEMU's ``-incoming``) instead of booting. ``labkit.vm.warmbuild``
makes one; ``labkit.vm.lab.Lab`` restores it.

A snapshot is kept in ``<snapshots>/<machine>/``: ``state`` (QEMU's
migration stream), ``files.list`` (what the guest copied into its tmpfs
root) and ``manifest.json``. ``<machine>`` is a hash of what shapes the
saved machine: the kernel (its build record and vmlinux), QEMU (its binary
and firmware), the machine's options (accel, vCPUs, memory, the kernel
command line less the host's TSC rate), the Python interpreter and labkit's
guest code. Within it the manifest's ``files`` fingerprint covers every file
the guest loaded before the save (size, mtime, inode) and the Python
environment's folders: a snapshot whose fingerprint no longer matches is
stale, never restored, and rebuilt. ``<snapshots>`` is ``$LABKIT_SNAPSHOTS``
(a workshop's shared, read-only folder) or ``<cache>/snapshots``.
"""

import hashlib
import json
import os
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from labkit import paths
from labkit.errors import VMError

FORMAT = 1
WARM_INIT = paths.GUEST_DIR / "warm-init"
TSC_TOLERANCE = 0.005  # a restored guest's clock runs at the rate it was told at boot


def snapshots_dir() -> Path:
    """``$LABKIT_SNAPSHOTS``, else ``<cache>/snapshots``."""
    if os.environ.get("LABKIT_SNAPSHOTS"):
        return Path(os.environ["LABKIT_SNAPSHOTS"])
    return paths.cache_dir() / "snapshots"


def writable() -> bool:
    """Whether this user may make snapshots in snapshots_dir() (or the nearest folder of it that exists)."""
    d = snapshots_dir()
    while not d.exists() and d != d.parent:
        d = d.parent
    return os.access(d, os.W_OK)


def _stat_words(path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def qemu_words(qemu: str) -> list:
    """QEMU as it shapes a saved machine: its binary and its firmware folders."""
    return [_stat_words(qemu), *(_stat_words(d) for d in ("/usr/share/qemu", "/usr/share/seabios"))]


def kernel_words(kernel_dir: Path, vmlinux: Path) -> list:
    try:
        record = hashlib.sha256((kernel_dir / "build.json").read_bytes()).hexdigest()
    except OSError:
        record = "no build.json"
    return [record, _stat_words(vmlinux)]


def machine_key(argv_template: list, kernel_dir: Path, vmlinux: Path, python: str) -> str:
    """The snapshot folder's name for this machine (see the module's docstring)."""
    words = [f"format {FORMAT}", *argv_template, *kernel_words(kernel_dir, vmlinux), *qemu_words(argv_template[0]),
             _stat_words(os.path.realpath(python)),
             *(_stat_words(p) for p in sorted(paths.GUEST_DIR.iterdir()) if p.is_file())]
    return hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]


def env_dirs() -> list:
    """The Python environment's library folders (the standard library, site-packages):
    a package added or removed changes one. The same whatever script runs."""
    found = sysconfig.get_paths()
    return sorted({found[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if os.path.isdir(found[k])})


def fingerprint(files, dirs=None) -> str:
    """files and the environment's folders (dirs: those a manifest recorded; default: this
    process's, which for a snapshot another checkout's Python made are not its own)."""
    words = [_stat_words(f) for f in files] + [_stat_words(d) for d in (env_dirs() if dirs is None else dirs)]
    return hashlib.sha256("\n".join(words).encode()).hexdigest()


# ---- what the guest copies into its root -----------------------------------------------


def _chain(path: str, out: dict, depth=0):
    """path and every symlink met on the way to it, each as the host has it (no
    entry goes through a symlinked folder, so tar recreates them all)."""
    if depth > 40:
        raise VMError(f"too many symlinks resolving {path}")
    parts = Path(path).parts
    cur = "/"
    for i, part in enumerate(parts[1:], start=1):
        nxt = os.path.join(cur, part)
        if os.path.islink(nxt):
            out[nxt] = True
            _chain(os.path.normpath(os.path.join(cur, os.readlink(nxt), *parts[i + 1:])), out, depth + 1)
            return
        cur = nxt
    out[cur] = True


def warm_files(python: str, env: dict, vmlinux: Path) -> list:
    """Every file the guest's warm Python and agent load, with the symlinks on
    the way (the interpreter, the ELF loader, the venv's pyvenv.cfg and .pth files)."""
    proc = subprocess.run([python, "-m", "labkit.runtime.zygote", "--list"], cwd=paths.PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise VMError("could not list the files the warm lab VM loads", details=proc.stderr[-3000:])
    wanted = [line for line in proc.stdout.splitlines() if line.startswith("/")]
    wanted += [python, "/lib64/ld-linux-x86-64.so.2", "/etc/ld.so.cache"]
    prefix = Path(python).parent.parent
    if (prefix / "pyvenv.cfg").is_file():
        wanted.append(str(prefix / "pyvenv.cfg"))
    for d in env_dirs():
        wanted += [str(p) for p in Path(d).glob("*.pth")]
    wanted += [str(p) for p in paths.GUEST_DIR.iterdir() if p.is_file()]
    wanted += [f"/{name}" for name in os.listdir("/") if os.path.islink(f"/{name}")]  # /lib -> usr/lib
    out = {}
    for path in wanted:
        if os.path.lexists(path):
            _chain(os.path.abspath(path), out)
    out[str(vmlinux)] = True  # not copied (the guest runs it), but a kernel rebuilt in place makes it stale
    # The loader opens a library by its soname (libz.so.1), a symlink next to the file mapped.
    real = {os.path.realpath(p) for p in out if ".so" in os.path.basename(p)}
    for d in {os.path.dirname(p) for p in real}:
        for entry in os.scandir(d):
            if entry.is_symlink() and ".so" in entry.name and os.path.realpath(entry.path) in real:
                out[entry.path] = True
    return sorted(out)


# ---- the snapshot on disk ---------------------------------------------------------------


@dataclass
class Snapshot:
    dir: Path
    manifest: dict

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def append(self) -> str:
        return self.manifest["append"]

    def summary(self) -> str:
        """One line: where, how big, for which kernel and machine, when made."""
        m = self.manifest
        return (f"{self.dir} ({m.get('state_bytes', 0) >> 20} MiB, kernel {m.get('release')}, {m.get('cpus')} vCPUs, "
                f"{m.get('memory')}, made {m.get('built')} in {m.get('seconds')} s)")


def load(key: str):
    """(Snapshot, "") if a fresh snapshot for key is on disk, else (None, why not)."""
    d = snapshots_dir() / key
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except FileNotFoundError:
        return None, "no warm snapshot for this kernel and machine yet"
    except (OSError, ValueError) as exc:
        return None, f"the warm snapshot's manifest is unreadable ({exc})"
    if manifest.get("format") != FORMAT or manifest.get("key") != key:
        return None, "the warm snapshot was made by another labkit"
    if not (d / "state").is_file():
        return None, "the warm snapshot has no saved state"
    if fingerprint(manifest.get("files", []), manifest.get("env_dirs")) != manifest.get("fingerprint"):
        return None, "the warm snapshot is stale: a file the guest loaded before the save has changed since"
    return Snapshot(d, manifest), ""


FAILURE_TTL = 3600.0  # a failed build is tried again after this long, or as soon as a file it listed changes


def failure(key: str) -> str:
    """Why the last build for key failed, if it did lately and nothing it loaded changed since; else ""."""
    path = snapshots_dir() / f"{key}.failed"
    try:
        record = json.loads(path.read_text())
        fresh = time.time() - path.stat().st_mtime < FAILURE_TTL
    except (OSError, ValueError):
        return ""
    if fresh and fingerprint(record.get("files", [])) == record.get("fingerprint"):
        return record.get("why", "")
    return ""


def record_failure(key: str, why: str, files=()):
    """Remember a failed build, so that the next starts boot cold at once instead of trying again."""
    try:
        (snapshots_dir() / f"{key}.failed").write_text(json.dumps(
            {"why": why, "files": list(files), "fingerprint": fingerprint(files)}))
    except OSError:
        pass


def read(folder):
    """The snapshot in folder as it is (fresh or not), or None."""
    if not folder:
        return None
    try:
        return Snapshot(Path(folder), json.loads((Path(folder) / "manifest.json").read_text()))
    except (OSError, ValueError):
        return None


def tsc_fits(snap: Snapshot, tsc_khz) -> bool:
    """The guest was told the host's TSC rate when it booted: it must still hold."""
    saved = snap.manifest.get("tsc_khz")
    if not saved or not tsc_khz:
        return saved == tsc_khz
    return abs(tsc_khz - saved) / saved <= TSC_TOLERANCE
