"""What ``labkit lite build`` takes from the package registries (npm, PyPI), once into a cache.

The site is made of files fetched by the ordinary clients (``npm pack``, ``pip download``)
at pinned versions; a second build reads them from the cache. ``run`` runs any build
step so a failure says which step and what it printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from labkit import paths
from labkit.errors import LabError


def run(argv, what, *, cwd=None, timeout=600, fix="check the network to the package registries (npm, PyPI)"):
    """Run a build step; a failure says which step and what it printed (and fix, what to do)."""
    try:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except FileNotFoundError:
        raise LabError(f"{what}: {argv[0]} is not installed", fix="./lab setup (npm: sudo apt-get install npm)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: no answer in {timeout} s", fix="check the network to the package registries") from None
    if r.returncode != 0:
        raise LabError(f"{what} failed: {(r.stderr or r.stdout).strip()[-1500:]}", fix=fix)
    return r.stdout


def cache() -> Path:
    return paths.private_dir(paths.private_dir(paths.cache_dir()) / "lite")


def npm_package(spec: str) -> Path:
    """npm's package spec ("pyodide@314.0.6"), unpacked once into the cache; its folder."""
    dest = cache() / "npm" / spec.replace("/", "_")
    if (dest / "package.json").exists():
        return dest
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    name = run(["npm", "pack", "--silent", "--pack-destination", tmp, spec], f"npm pack {spec}",
               cwd=tmp).strip().splitlines()[-1]
    with tarfile.open(tmp / name) as tar:
        tar.extractall(tmp, filter="data")
    shutil.rmtree(dest, ignore_errors=True)
    (tmp / "package").rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


def pypi_wheels(specs, python: str) -> list[Path]:
    """Pure-Python wheels for specs ("name==version") for that Python ("3.14"), from PyPI once into the cache."""
    dest = cache() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", python, "-d", dest, *specs], "pip download")
    found = []
    for spec in specs:
        name, _, version = spec.partition("==")
        stem = name.replace("-", "_").lower()
        hits = [p for p in dest.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
        if not hits:
            raise LabError(f"pip download gave no wheel for {spec}")
        found.append(hits[0])
    return found
