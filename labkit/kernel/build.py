"""The build steps of the lab kernel (``labkit kernel build``).

Each step is named in progress and in errors; ``labkit.kernel`` describes
the recipe. ``Builder.build`` computes the cache key and returns at once
when ``<cache>/kernel/<key>/out`` is there; ``build()`` first takes a
kernel imported or shared for this checkout (``labkit.kernel.cache.find``).
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from labkit import tools
from labkit.errors import KernelBuildFailed, MissingTool
from labkit.kernel.cache import (
    SOURCE_PACKAGE,
    cache_key,
    current_key,
    find,
    flavour,
    fragment_bytes,
    fragment_files,
    fragment_options,
    kernel_root,
    missing_options,
    series,
    source_tarball,
    source_version,
)
from labkit.progress import Progress

# ---- building ----------------------------------------------------------------


class Builder:
    """One run of the recipe; ``progress`` reports each step."""

    def __init__(self, *, verbose=False, jobs=None, progress=None):
        self.verbose = verbose
        self.jobs = jobs or os.cpu_count() or 1
        self.progress = progress or Progress()
        self.log_path = None

    @contextmanager
    def step(self, name, what):
        self.progress.step(name, what)
        t0 = time.monotonic()
        try:
            yield
        except (KernelBuildFailed, MissingTool):
            raise  # already say which step and what to do
        except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
            tail = _tail(self.log_path) if self.log_path else ""
            raise KernelBuildFailed(
                f"kernel build failed at step '{name}': {exc}",
                fix=f"see {self.log_path}" if self.log_path else "re-run with --verbose",
                details=tail,
            ) from None
        self.progress.done(name, time.monotonic() - t0)

    def run(self, argv, *, cwd, log, count_lines=False):
        """Run argv with output to log (and the terminal when verbose)."""
        self.log_path = log
        with open(log, "ab") as logf:
            logf.write(("$ " + " ".join(map(str, argv)) + "\n").encode())
            logf.flush()
            proc = subprocess.Popen(
                [str(a) for a in argv], cwd=cwd, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
            n = 0
            try:
                for raw in proc.stdout:
                    logf.write(raw)
                    if self.verbose:
                        sys.stdout.buffer.write(raw)
                        sys.stdout.flush()
                    elif count_lines:
                        line = raw.decode(errors="replace").strip()
                        if line[:2] in ("CC", "AR", "LD", "AS", "BT") or line.startswith(("CC ", "LD ")):
                            n += 1
                            self.progress.tick(n, line.split()[-1])
                rc = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if rc != 0:
            raise RuntimeError(f"{Path(str(argv[0])).name} exited with status {rc}")

    def build(self) -> Path:
        tools.require(*tools.KERNEL_BUILD_TOOLS)
        with self.step("source", "finding linux-source-6.12"):
            tarball = ensure_source(self.progress)
            version = source_version()
        patches = series()
        fragment = fragment_bytes()
        key = cache_key(version, patches, fragment)
        root = kernel_root() / key
        out = root / "out"
        if (out / "build.json").is_file():
            self.progress.note(f"cached: {out}")
            return out
        root.mkdir(parents=True, exist_ok=True)
        # One working tree per source version, at a fixed path: kbuild
        # records absolute paths, so a tree that moved would be rebuilt from
        # scratch. Builds for other patches or configs reuse it.
        work = kernel_root() / "work" / hashlib.sha256(version.encode()).hexdigest()[:12]
        work.mkdir(parents=True, exist_ok=True)
        lock = open(work / "lock", "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return self._build_in(work, root, out, tarball, version, patches, fragment, key)
        finally:
            lock.close()

    def _build_in(self, work, root, out, tarball, version, patches, fragment, key):
        if (out / "build.json").is_file():  # built by another process while we waited
            return out
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        # Each flavour has a build directory of its own: switching between
        # them would otherwise rebuild everything each time.
        suffix = "" if flavour() == "lab" else f"-{flavour()}"
        src, build = work / "src", work / f"build{suffix}"
        with self.step("unpack", "unpacking the kernel source"):
            self.log_path = logs / "unpack.log"
            if (src / "Makefile").is_file():
                self.progress.note(f"reusing {src}")
            else:
                shutil.rmtree(src, ignore_errors=True)
                shutil.rmtree(build, ignore_errors=True)
                shutil.rmtree(work / "applied", ignore_errors=True)
                src.mkdir()
                self.run(["tar", "-xf", tarball, "-C", src, "--strip-components=1"], cwd=work, log=self.log_path)
        with self.step("patch", f"applying {len(patches)} patches"):
            self.log_path = logs / "patch.log"
            self._sync_patches(work, src, patches, version)
        names = " + ".join(f"kernel/{f.name}" for f in fragment_files())
        with self.step("configure", f"tinyconfig + kvm_guest.config + {names}"):
            self.log_path = logs / "configure.log"
            build.mkdir(exist_ok=True)
            frag = work / f"lab{suffix}.config"
            frag.write_bytes(fragment)
            # Compose the config in a scratch directory: tinyconfig in the
            # build directory itself would flip hundreds of symbols there and
            # back, and make would rebuild everything that depends on them.
            scratch = work / f"config-scratch{suffix}"
            scratch.mkdir(exist_ok=True)
            self.run(["make", f"O={scratch}", "tinyconfig"], cwd=src, log=self.log_path)
            self.run(["scripts/kconfig/merge_config.sh", "-m", "-O", scratch, scratch / ".config",
                      "kernel/configs/kvm_guest.config", frag], cwd=src, log=self.log_path)
            self.run(["make", f"O={scratch}", "olddefconfig"], cwd=src, log=self.log_path)
            wanted = (scratch / ".config").read_bytes()
            current = build / ".config"
            if not current.exists() or current.read_bytes() != wanted:
                current.write_bytes(wanted)
                self.run(["make", f"O={build}", "olddefconfig"], cwd=src, log=self.log_path)
            config = fragment_options((build / ".config").read_text())
            missing = missing_options(fragment_options(fragment.decode()), config)
            if missing:
                raise KernelBuildFailed(
                    f"kernel build failed at step 'configure': options from {names} did not survive olddefconfig",
                    fix="check their dependencies (make menuconfig, search for the symbol)",
                    details="\n".join(missing),
                )
        # KASAN's early setup runs on the decompressor's path into the kernel,
        # not on the PVH entry (which calls instrumented code before it): the
        # debug kernel boots as a bzImage.
        targets = ["vmlinux", "bzImage"] if flavour() == "debug" else ["vmlinux"]
        with self.step("build", f"make -j{self.jobs} {' '.join(targets)} (first build: several minutes)"):
            self.log_path = logs / "build.log"
            self.run(["make", f"O={build}", f"-j{self.jobs}", *targets], cwd=src, log=self.log_path,
                     count_lines=True)
        with self.step("export", "vmlinux, vmlinux.h"):
            self.log_path = logs / "export.log"
            tmp = root / "out.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            # QEMU loads the ELF through its PVH note; DWARF is dead weight
            # there. BTF lives in an allocated section and stays.
            self.run(["objcopy", "--strip-debug", build / "vmlinux", tmp / "vmlinux"], cwd=root, log=self.log_path)
            with open(tmp / "vmlinux.h", "wb") as fh:
                subprocess.run([tools.which("bpftool"), "btf", "dump", "file", str(tmp / "vmlinux"), "format", "c"],
                               stdout=fh, stderr=open(self.log_path, "ab"), check=True)
            shutil.copy(build / ".config", tmp / "config")
            if "bzImage" in targets:
                shutil.copy(build / "arch/x86/boot/bzImage", tmp / "bzImage")
            release = subprocess.run(["make", "-s", f"O={build}", "kernelrelease"], cwd=src,
                                     capture_output=True, text=True, check=True).stdout.strip()
            info = {
                "key": key,
                "source": version,
                "release": release,
                "patches": [p.name for p in patches],
                "flavour": flavour(),
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n")
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
        return out

    def _sync_patches(self, root, src, patches, version):
        """Make the tree carry exactly ``patches``: reverse the others, apply the new.

        Files whose content ends up as it was get their old mtime back, so
        make does not rebuild what only moved out and back in (skbuff.h is
        included nearly everywhere).
        """
        applied_dir = root / "applied"
        applied_dir.mkdir(exist_ok=True)
        order_file = applied_dir / "order"
        applied = order_file.read_text().split() if order_file.exists() else []
        touched = set()
        for p in [applied_dir / a for a in applied] + list(patches):
            touched |= patched_files(p.read_bytes())
        before = {}
        for rel in touched:
            f = src / rel
            if f.is_file():
                st = f.stat()
                before[rel] = (hashlib.sha256(f.read_bytes()).digest(), st.st_atime_ns, st.st_mtime_ns)
        self.apply_series(applied_dir, order_file, applied, src, patches, version)
        for rel, (digest, atime, mtime) in before.items():
            f = src / rel
            if f.is_file() and hashlib.sha256(f.read_bytes()).digest() == digest:
                os.utime(f, ns=(atime, mtime))

    def apply_series(self, applied_dir, order_file, applied, src, patches, version):
        wanted = [(p.name, p.read_bytes()) for p in patches]
        # Keep the longest common prefix, reverse the rest in reverse order.
        keep = 0
        for (name, data), old in zip(wanted, applied):
            if name != old or (applied_dir / old).read_bytes() != data:
                break
            keep += 1
        for old in reversed(applied[keep:]):
            self.run(["patch", "-p1", "-R", "--no-backup-if-mismatch", "-i", applied_dir / old], cwd=src,
                     log=self.log_path)
            (applied_dir / old).unlink()
            applied.remove(old)
            order_file.write_text("\n".join(applied) + "\n")
        for name, data in wanted[keep:]:
            (applied_dir / name).write_bytes(data)
            argv = ["patch", "-p1", "--forward", "--no-backup-if-mismatch", "-i", applied_dir / name]
            try:  # a dry run first: a patch that does not apply leaves the tree as it was
                self.run([*argv, "--dry-run"], cwd=src, log=self.log_path)
            except RuntimeError:
                (applied_dir / name).unlink()
                raise KernelBuildFailed(
                    f"kernel/patches/{name} does not apply to {version}",
                    fix=("Debian serves a point release the series was not made on (kernel/README.md names the "
                         "ones it was tested on): rebase the series onto it, or build from the source it was "
                         "made on with LABKIT_KERNEL_SOURCE=/path/to/linux-source-6.12.tar.xz"),
                    details=_tail(self.log_path),
                ) from None
            self.run(argv, cwd=src, log=self.log_path)
            applied.append(name)
            order_file.write_text("\n".join(applied) + "\n")


def patched_files(patch: bytes) -> set[str]:
    """Paths a git-format patch touches (its ``+++ b/...`` and ``--- a/...`` lines)."""
    files = set()
    for line in patch.decode(errors="replace").splitlines():
        if line.startswith(("+++ b/", "--- a/")):
            files.add(line[6:].split("\t")[0])
    return files


def ensure_source(progress) -> Path:
    """The source tarball, installing the package first when missing and root."""
    try:
        return source_tarball()
    except MissingTool:
        if os.environ.get("LABKIT_KERNEL_SOURCE") or os.geteuid() != 0 or not shutil.which("apt-get"):
            raise
    progress.note(f"installing {SOURCE_PACKAGE} with apt-get")
    rc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", SOURCE_PACKAGE],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if rc.returncode != 0:
        raise MissingTool(
            f"apt-get could not install {SOURCE_PACKAGE}",
            fix="run: sudo apt-get update && sudo apt-get install linux-source-6.12",
            details=rc.stderr[-2000:],
        )
    return source_tarball()


def _tail(path, lines=25):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def build(*, verbose=False, jobs=None, progress=None) -> Path:
    """The lab kernel: one imported or shared for this checkout as it is, else the build (cached)."""
    progress = progress or Progress()
    found = find()
    if found is not None and found != _built_here():
        progress.note(f"prebuilt for this checkout's patches and config: {found}")
        return found
    return Builder(verbose=verbose, jobs=jobs, progress=progress).build()


def _built_here() -> Path | None:
    """Where the build puts the kernel for the current key (None without the source)."""
    try:
        return kernel_root() / current_key() / "out"
    except MissingTool:
        return None
