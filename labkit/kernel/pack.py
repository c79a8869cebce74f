"""A built lab kernel as one file: ``labkit kernel export`` and ``import``.

The artifact is a tar (gzip-compressed unless the name ends in ``.tar`` or
``.tar.xz``) whose first member is ``manifest.json``, then ``vmlinux`` (as
the lab boots it), ``vmlinux.h`` and ``config``. The manifest records the
artifact format, what the kernel was built for (recipe version, patch
series id, config id: ``labkit.kernel.cache.identity``), its release, source
and cache key, the labkit version, and a sha256 and size for every member.

Import refuses, in one line naming what differs, an artifact of another
format, recipe, patch series or config than this checkout's, and one whose
members do not match their checksums, are missing, or are cut short. It
unpacks into a temporary directory beside the destination and renames it
into place only when everything checked out, so a refused import leaves
nothing. The destination is the user's cache, or with ``--to DIR`` a
shared location (dirs 0755, files 0644) that ``kernel_path()`` reads when
it is ``$LABKIT_SHARED_KERNELS`` or ``/var/cache/labkit/kernel``.
"""

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

from labkit import __version__, paths
from labkit.errors import LabError
from labkit.kernel import cache as kernelcache
from labkit.progress import Progress

FORMAT = 1
MANIFEST = "manifest.json"
MEMBERS = ("vmlinux", "vmlinux.h", "config")
CHUNK = 1 << 20
COMPRESSION = {"w": "tar", "w:gz": "tar, gzip", "w:xz": "tar, xz"}
REBUILD = "build it here with labkit kernel build, or export it from a checkout of that {what}"


class KernelArtifactError(LabError):
    """A kernel artifact could not be written or was refused."""


# ---- export ----------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def kernel_identity(out: Path) -> dict:
    """What the kernel in ``out`` was built for: its build.json, or this checkout when built here."""
    try:
        info = kernelcache.info(out)
    except (OSError, ValueError):
        raise KernelArtifactError(f"{out} has no readable build.json, so what it was built for is unknown",
                                  fix="export a kernel from labkit kernel build or labkit kernel import") from None
    if all(k in info for k in ("recipe", "series", "config_id")):  # imported: it says
        return {k: info[k] for k in ("recipe", "series", "config_id")} | {"info": info}
    key = kernelcache.current_key()
    if info.get("key") != key:
        raise KernelArtifactError(
            f"the kernel in {out} was built for cache key {info.get('key')}, this checkout's is {key}",
            fix="build this checkout's kernel first: labkit kernel build")
    return kernelcache.identity() | {"info": info}


def _tar_mode(path: Path) -> str:
    name = path.name
    if name.endswith(".tar"):
        return "w"
    if name.endswith((".tar.xz", ".txz")):
        return "w:xz"
    return "w:gz"


def export(path, out=None, progress=None) -> dict:
    """Write the kernel in ``out`` (default: ``kernel_path()``) to ``path``; return the manifest."""
    progress = progress or Progress()
    path = Path(path)
    out = Path(out) if out else kernelcache.kernel_path()
    ident = kernel_identity(out)
    info = ident.pop("info")
    for name in MEMBERS:
        if not (out / name).is_file():
            raise KernelArtifactError(f"the kernel in {out} has no {name}", fix="rebuild it: labkit kernel build")
    t0 = time.monotonic()
    progress.step("export", f"checksumming the kernel in {out}")
    members = {}
    for name in MEMBERS:
        members[name] = {"sha256": sha256_file(out / name), "size": (out / name).stat().st_size}
        progress.note(f"{name}: {members[name]['size'] / 1e6:.1f} MB, sha256 {members[name]['sha256'][:16]}")
    manifest = {
        "format": FORMAT, **ident,
        "patches": info.get("patches", []), "key": info.get("key"), "source": info.get("source"),
        "release": info.get("release"), "built": info.get("built"),
        "labkit_version": __version__, "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "members": members,
    }
    mode = _tar_mode(path)
    progress.note(f"writing {path} ({COMPRESSION[mode]})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        kwargs = {"compresslevel": 6} if mode == "w:gz" else {}
        with tarfile.open(tmp, mode, format=tarfile.PAX_FORMAT, **kwargs) as tar:
            data = (json.dumps(manifest, indent=2) + "\n").encode()
            ti = _tarinfo(MANIFEST, len(data), time.time())
            tar.addfile(ti, io.BytesIO(data))
            for name in MEMBERS:
                st = (out / name).stat()
                with open(out / name, "rb") as fh:
                    tar.addfile(_tarinfo(name, st.st_size, st.st_mtime), fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    progress.done("export", time.monotonic() - t0)
    return manifest


def _tarinfo(name, size, mtime):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, int(mtime), 0o644
    return ti


# ---- import ----------------------------------------------------------------------


def check_manifest(manifest, ident: dict, path) -> None:
    """Refuse (one line, naming what differs) an artifact not for this checkout."""
    if not isinstance(manifest, dict) or "format" not in manifest:
        raise KernelArtifactError(f"kernel artifact {path} has a damaged manifest (file damaged?)",
                                  fix="export it again: labkit kernel export -o FILE")
    if manifest["format"] != FORMAT:
        raise KernelArtifactError(
            f"kernel artifact {path} is format {manifest['format']}, this labkit ({__version__}) reads format {FORMAT}",
            fix="export it again with this checkout's labkit, or build it here with labkit kernel build")
    for field, what in (("recipe", "kernel recipe"), ("series", "patch series"), ("config_id", "kernel/lab.config")):
        if manifest.get(field) != ident[field]:
            raise KernelArtifactError(
                f"kernel artifact {path} is for {what} {manifest.get(field)}, this checkout is {ident[field]}",
                fix=REBUILD.format(what=what))
    members = manifest.get("members")
    if not isinstance(members, dict) or sorted(members) != sorted(MEMBERS) or not all(
            isinstance(m, dict) and re.fullmatch(r"[0-9a-f]{64}", str(m.get("sha256"))) and
            isinstance(m.get("size"), int) for m in members.values()):
        raise KernelArtifactError(f"kernel artifact {path} has a damaged member list (file damaged?)",
                                  fix="export it again: labkit kernel export -o FILE")


def unpack(path, dest: Path, ident: dict, progress) -> dict:
    """Check ``path`` against ``ident`` and its checksums, writing its members into ``dest``."""
    damaged = "copy it again, or export it again: labkit kernel export -o FILE"
    try:
        with tarfile.open(path, "r|*") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile() or first.size > 1 << 20:
                raise KernelArtifactError(f"{path} is not a labkit kernel artifact (no {MANIFEST} first)",
                                          fix="give the file labkit kernel export wrote")
            try:
                manifest = json.loads(tar.extractfile(first).read())
            except ValueError:
                manifest = None
            check_manifest(manifest, ident, path)
            progress.note(f"for this checkout: patch series {ident['series']}, config {ident['config_id']}, "
                          f"kernel {manifest.get('release')}")
            dest.mkdir()
            seen = set()
            while (member := tar.next()) is not None:
                name = member.name
                if name not in MEMBERS or name in seen or not member.isfile():
                    raise KernelArtifactError(f"kernel artifact {path} has an unexpected member {name}",
                                              fix="give the file labkit kernel export wrote")
                seen.add(name)
                want = manifest["members"][name]
                h, size = hashlib.sha256(), 0
                src = tar.extractfile(member)
                with open(dest / name, "wb") as fh:
                    while block := src.read(CHUNK):
                        h.update(block)
                        size += len(block)
                        fh.write(block)
                if size != want["size"] or h.hexdigest() != want["sha256"]:
                    raise KernelArtifactError(
                        f"kernel artifact {path}: member {name} does not match its checksum (file damaged?)",
                        fix=damaged)
                progress.note(f"{name}: {size / 1e6:.1f} MB, sha256 ok")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise KernelArtifactError(f"kernel artifact {path} is truncated or damaged ({exc})", fix=damaged) from None
    except OSError as exc:  # tarfile wraps the decompressors' errors: this is opening path or writing dest
        if exc.filename and Path(exc.filename) == Path(path):
            raise KernelArtifactError(f"cannot read kernel artifact {path}: {exc.strerror}",
                                      fix="give a file you can read") from None
        raise KernelArtifactError(f"could not unpack {path} into {dest.parent}: {exc.strerror or exc}",
                                  fix="check the free space and permissions there") from None
    missing = [n for n in MEMBERS if n not in seen]
    if missing:
        raise KernelArtifactError(f"kernel artifact {path} has no member {missing[0]} (file truncated?)",
                                  fix=damaged)
    return manifest


def import_kernel(path, to=None, progress=None) -> Path:
    """Install the artifact at ``path`` into the user's cache, or ``to`` (shared); return its directory."""
    progress = progress or Progress()
    path = Path(path)
    if not path.is_file():
        raise KernelArtifactError(f"kernel artifact {path} not found", fix="give the file labkit kernel export wrote")
    ident = kernelcache.identity()
    shared = to is not None
    root = Path(to).absolute() if shared else kernelcache.kernel_root()
    t0 = time.monotonic()
    progress.step("import", f"checking {path}")
    made = []
    try:
        made = _makedirs(root, 0o755 if shared else None)
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
    except OSError as exc:
        _remove_empty(made)
        fix = (f"run it as root: sudo labkit kernel import {path} --to {root}" if isinstance(exc, PermissionError)
               else "give a directory you can write with --to DIR")
        why = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or str(exc)
        raise KernelArtifactError(f"cannot write {root}: {why}", fix=fix) from None
    done = False
    try:
        manifest = unpack(path, tmp / "out", ident, progress)
        key = manifest.get("key")
        if not re.fullmatch(r"[0-9a-f]{16}", str(key)):
            key = f"import-{ident['series']}-{ident['config_id']}"
        info = {k: manifest.get(k) for k in ("key", "source", "release", "patches", "built")}
        info |= ident | {"labkit_version": manifest.get("labkit_version"), "members": manifest["members"],
                         "imported": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "artifact": str(path.absolute())}
        (tmp / "out" / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        _set_modes(tmp / "out", shared)
        if not (root / key).is_dir():
            made += _makedirs(root / key, 0o755 if shared else None)
        target = root / key / "out"
        if target.exists():
            target.rename(tmp / "old")
        try:
            (tmp / "out").rename(target)
        except BaseException:
            if (tmp / "old").exists():
                (tmp / "old").rename(target)
            raise
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            _remove_empty(made)
    progress.done("import", time.monotonic() - t0)
    if shared:
        _warn_unreachable(root, progress)
        if root != kernelcache.shared_root():
            progress.note(f"labkit looks for shared kernels in {kernelcache.shared_root()}; "
                          f"set LABKIT_SHARED_KERNELS={root} for it to look here")
    return target


def _makedirs(d: Path, mode) -> list[Path]:
    """mkdir -p, returning the directories it created (outermost first), chmod'ed to ``mode``."""
    missing = []
    while not d.exists():
        missing.append(d)
        d = d.parent
    made = []
    try:
        for m in reversed(missing):
            m.mkdir()
            made.append(m)
            if mode is not None:
                os.chmod(m, mode)
            elif m == paths.cache_dir():  # the user's own cache: theirs alone, as the lab makes it
                os.chmod(m, 0o700)
    except BaseException:
        _remove_empty(made)
        raise
    return made


def _remove_empty(dirs):
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            pass


def _set_modes(out: Path, shared: bool):
    if shared:
        os.chmod(out, 0o755)
        for f in out.iterdir():
            os.chmod(f, 0o644)
    else:  # as a build would have made it
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(out, 0o777 & ~umask)


def _warn_unreachable(root: Path, progress):
    for d in [root, *root.parents]:
        mode = d.stat().st_mode
        if not mode & stat.S_IXOTH or (d == root and not mode & stat.S_IROTH):
            progress.note(f"warning: other users cannot reach {d} (mode {stat.S_IMODE(mode):04o}), "
                          f"so they will not find this kernel")
            return


# ---- command line ------------------------------------------------------------------


def add_commands(kernel_sub):
    """Register ``labkit kernel export`` and ``labkit kernel import`` under ``kernel_sub``."""
    ke = kernel_sub.add_parser("export", help="write the lab kernel to one checksummed file")
    ke.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the file to write: .tar, .tar.xz, else gzip-compressed (e.g. lab-kernel.tar.gz)")
    ke.set_defaults(func=cmd_export)
    ki = kernel_sub.add_parser("import", help="install a kernel from labkit kernel export, so none is built")
    ki.add_argument("file")
    ki.add_argument("--to", metavar="DIR",
                    help=f"install into DIR for all users (e.g. {kernelcache.SHARED_KERNELS}) "
                         f"instead of your own cache")
    ki.set_defaults(func=cmd_import)


def cmd_export(args):
    manifest = export(args.output)
    print(f"{args.output}: lab kernel {manifest['release']}, patch series {manifest['series']}, "
          f"config {manifest['config_id']}")


def cmd_import(args):
    print(import_kernel(args.file, to=args.to))
