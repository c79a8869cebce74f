"""What the lab kernel is built from, its cache key, and finding it again.

A kernel directory (``out``) holds ``vmlinux``, ``vmlinux.h``, ``config``
and ``build.json``. Where ``kernel_path()`` looks, first hit wins:

1. ``$LABKIT_KERNEL_DIR`` (a kernel built elsewhere, taken as it is);
2. the user's cache, ``<cache>/kernel/<key>/out``: built here for the
   current key, or imported (``labkit kernel import``) for this checkout's
   patch series and config;
3. the shared read-only location, ``$LABKIT_SHARED_KERNELS`` or
   ``/var/cache/labkit/kernel`` (same layout; a workshop server's
   instructor imports there with ``--to``). Never written here.

Two flavours share the recipe: ``lab`` (``kernel/lab.config``) and
``debug`` (``kernel/lab.config`` then ``kernel/debug.config``: KASAN,
lockdep, kmemleak, lkdtm), picked by ``$LABKIT_KERNEL_FLAVOUR`` (default
``lab``) for every function here; each has its own cache entry.

The cache key hashes the source package version, the patches, the config
fragment(s) and the recipe version. A kernel from another machine is matched
by what this checkout decides alone (no kernel source needed): the recipe
version, ``series_id()`` (the patches, names and contents, in order) and
``config_id()`` (``kernel/lab.config``), recorded in its ``build.json``.
"""

import hashlib
import json
import os
import subprocess
from pathlib import Path

from labkit import paths
from labkit.errors import KernelBuildFailed, KernelNotBuilt, MissingTool

RECIPE_VERSION = "1"
SOURCE_PACKAGE = "linux-source-6.12"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
SHARED_KERNELS = Path("/var/cache/labkit/kernel")
FLAVOURS = {"lab": ("lab.config",), "debug": ("lab.config", "debug.config")}


# ---- what to build -----------------------------------------------------------


def series(kernel_dir: Path = paths.KERNEL_SRC_DIR) -> list[Path]:
    """The patches of ``kernel/series``, in order."""
    names = []
    for line in (kernel_dir / "series").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    patches = [kernel_dir / "patches" / name for name in names]
    for p in patches:
        if not p.is_file():
            raise KernelBuildFailed(f"kernel/series names {p.name}, which is not in kernel/patches")
    return patches


def fragment_options(text: str) -> dict[str, str]:
    """``CONFIG_X`` -> value ("n" for ``# CONFIG_X is not set``) from a config fragment."""
    options = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            options[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[2:-len(" is not set")]] = "n"
    return options


def missing_options(fragment: dict[str, str], config: dict[str, str]) -> list[str]:
    """Options the fragment asks for that the final config does not have."""
    missing = []
    for key, want in fragment.items():
        have = config.get(key, "n")
        if have != want:
            missing.append(f"{key}={want} (got {have})")
    return missing


def source_version() -> str:
    """The installed linux-source package version, or the tarball's identity."""
    tarball = source_tarball()
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
            capture_output=True, text=True, check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return f"{SOURCE_PACKAGE} {out.stdout.strip()}"
    except OSError:  # no dpkg-query (not Debian), or no subprocess at all
        pass
    st = tarball.stat()
    return f"{tarball.name} {st.st_size} {int(st.st_mtime)}"


def source_tarball() -> Path:
    override = os.environ.get("LABKIT_KERNEL_SOURCE")
    tarball = Path(override) if override else SOURCE_TARBALL
    if not tarball.is_file():
        raise MissingTool(
            f"kernel source {tarball} not found",
            fix=f"install it: sudo apt-get install {SOURCE_PACKAGE} (labkit kernel build does this when run as root)",
        )
    return tarball


def flavour() -> str:
    """``lab`` or ``debug``, from ``$LABKIT_KERNEL_FLAVOUR``."""
    name = os.environ.get("LABKIT_KERNEL_FLAVOUR") or "lab"
    if name not in FLAVOURS:
        raise KernelBuildFailed(f"LABKIT_KERNEL_FLAVOUR={name} is not a kernel flavour",
                                fix=f"use one of: {', '.join(FLAVOURS)} (or unset it)")
    return name


def fragment_files() -> list[Path]:
    """The config fragments of the current flavour, in the order they apply."""
    return [paths.KERNEL_SRC_DIR / name for name in FLAVOURS[flavour()]]


def fragment_bytes() -> bytes:
    """The current flavour's fragments, concatenated: a later line wins."""
    return b"".join(f.read_bytes() for f in fragment_files())


def cache_key(version: str, patches: list[Path], fragment: bytes) -> str:
    h = hashlib.sha256()
    # The debug flavour's recipe also makes a bzImage (its KASAN cannot boot through PVH).
    recipe = RECIPE_VERSION + ("+bzImage" if flavour() == "debug" else "")
    h.update(f"recipe {recipe}\n{version}\n".encode())
    for p in patches:
        h.update(p.name.encode() + b"\n" + p.read_bytes())
    h.update(fragment)
    return h.hexdigest()[:16]


def current_key() -> str:
    return cache_key(source_version(), series(), fragment_bytes())


# ---- which kernel this checkout wants, without the source --------------------


def series_id(patches: list[Path] | None = None) -> str:
    """The patch series the cache key hashes (names and contents, in order)."""
    h = hashlib.sha256()
    for p in series() if patches is None else patches:
        data = p.read_bytes()
        h.update(f"{p.name}\n{len(data)}\n".encode() + data)
    return h.hexdigest()[:12]


def config_id(fragment: bytes | None = None) -> str:
    """The config fragment the cache key hashes (``kernel/lab.config``)."""
    return hashlib.sha256(fragment_bytes() if fragment is None else fragment).hexdigest()[:12]


def identity() -> dict:
    """What a kernel from elsewhere must have been built for to serve this checkout."""
    return {"recipe": RECIPE_VERSION, "series": series_id(), "config_id": config_id()}


# ---- finding it ----------------------------------------------------------------


def kernel_root() -> Path:
    return paths.cache_dir() / "kernel"


def shared_root() -> Path | None:
    """``$LABKIT_SHARED_KERNELS`` (set but empty: none), else /var/cache/labkit/kernel."""
    value = os.environ.get("LABKIT_SHARED_KERNELS")
    if value is None:
        return SHARED_KERNELS
    return Path(value) if value else None


def info(out: Path) -> dict:
    return json.loads((out / "build.json").read_text())


def _read_info(out: Path) -> dict | None:
    try:
        data = json.loads((out / "build.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and (out / "vmlinux").is_file() else None


def matching(root: Path, ident: dict) -> Path | None:
    """The newest ``<root>/*/out`` whose build.json records ``ident`` (an imported kernel)."""
    try:
        entries = [d for d in root.iterdir() if not d.name.startswith(".")]
    except OSError:
        return None
    hits = []
    for d in entries:
        out = d / "out"
        data = _read_info(out)
        if data and all(data.get(k) == v for k, v in ident.items()):
            hits.append((data.get("imported") or data.get("built") or "", str(out), out))
    return max(hits)[2] if hits else None


def find() -> Path | None:
    """The lab kernel for this checkout in the user's cache or the shared location, else None."""
    try:
        key = current_key()
    except MissingTool:  # no kernel source here: only a kernel from elsewhere can serve
        key = None
    ident = identity()
    for root in (kernel_root(), shared_root()):
        if root is None:
            continue
        if key and _read_info(root / key / "out") is not None:
            return root / key / "out"
        hit = matching(root, ident)
        if hit:
            return hit
    return None


def kernel_path() -> Path:
    """The directory with ``vmlinux`` and ``vmlinux.h`` of the current lab kernel.

    ``$LABKIT_KERNEL_DIR`` overrides the cache (a kernel built elsewhere).
    """
    override = os.environ.get("LABKIT_KERNEL_DIR")
    if override:
        out = Path(override)
        if not (out / "vmlinux").is_file():
            raise KernelNotBuilt(
                f"LABKIT_KERNEL_DIR={out} has no vmlinux",
                fix="point it at the output of `labkit kernel path`, or unset it",
            )
        return out
    out = find()
    if out is None:
        raise KernelNotBuilt(
            "no lab kernel is built for the current patches and config",
            fix="run: labkit kernel build (or labkit kernel import FILE, a kernel exported elsewhere)",
        )
    return out
