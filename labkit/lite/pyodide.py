"""The Pyodide a JupyterLite site of the course runs, served from the site itself.

npm's ``pyodide`` package is Pyodide's core (the interpreter and the standard
library) and a lock file naming some 350 packages it does not hold. The
site's Pyodide folder is that core plus the wheels the lessons need, and a
lock that names only those:

- what the kernel itself loads (micropip, IPython and its dependencies, jedi,
  parso: ``KERNEL_PACKAGES``), from PyPI at the lock's versions. PyPI's bytes
  are not Pyodide's builds, so their lock entries get the downloaded files'
  names and hashes;
- the course: labkit (a wheel of this checkout, recordings inside), graphviz,
  ipywidgets and what it needs, at the versions this lab runs with. Being in
  the lock, ``import labkit`` loads them (the kernel loads a cell's imports
  from the lock) with no ``%pip``;
- the Pyodide kernel's own wheels (piplite, pyodide-kernel, its ipykernel
  stand-in: ``KERNEL_OWN``), so that the kernel's start-up packages
  (``PRELOAD``) load from the lock in one go, given to ``loadPyodide``, where
  the kernel would otherwise install them one by one with micropip.

Every other entry is dropped: a package the site does not hold must fail to
import, never go to the internet. The standard library and the wheels go in
compiled to bytecode (``labkit.lite.bytecode``), less what the course never
loads (``TRIM``, ``SOURCE_ONLY``). The folder's ``boot.mjs`` is the kernel's
entry point to Pyodide: it imports the kernel's modules as soon as Pyodide is
up (why: in boot.mjs).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from labkit import paths
from labkit.errors import LabError
from labkit.lite.bytecode import compile_zips
from labkit.lite.registry import cache, npm_package, pypi_wheels, run

PYODIDE = "314.0.6"  # what jupyterlite-pyodide-kernel 0.8.6 is made for (its PYODIDE_VERSION)
PYTHON = "3.14"      # Pyodide 314's Python, for pip to pick wheels
KERNEL_PACKAGES = ("micropip", "ipython", "asttokens", "decorator", "executing", "matplotlib-inline",
                   "prompt-toolkit", "pure-eval", "pygments", "six", "stack-data", "traitlets", "wcwidth",
                   "jedi", "parso")
# The course's own packages: lock name -> (what `import` names, what it needs from the lock)
COURSE = {
    "labkit": (["labkit"], ["graphviz", "ipywidgets"]),
    "graphviz": (["graphviz"], []),
    "ipywidgets": (["ipywidgets"], ["comm", "ipython", "jupyterlab-widgets", "traitlets"]),
    "comm": (["comm"], ["traitlets"]),
    "jupyterlab-widgets": (["jupyterlab_widgets"], []),
}
# The Pyodide kernel's own wheels, which JupyterLite ships for piplite to install: in the lock too
KERNEL_OWN = {
    "piplite": (["piplite"], ["micropip"]),
    "pyodide-kernel": (["pyodide_kernel"], ["comm", "ipython"]),
    "ipykernel": (["ipykernel"], ["pyodide-kernel"]),  # the kernel's stand-in for ipykernel
}
KERNEL_OWN_DIR = "@jupyterlite/pyodide-kernel-extension/static/pypi"
# What the kernel's worker loads at start, by the names it checks in loadPyodideOptions.packages
# (it installs each one it does not find there with micropip and piplite, one after the other).
# Given to loadPyodide, the lock's packages and their dependencies load in one go.
PRELOAD = ("micropip", "piplite", "ipykernel", "comm", "pyodide-kernel", "jedi", "ipython")
# Folders of a wheel the course never loads, left out (each kept, empty, where its package lists it):
# jedi's type stubs for third-party packages and Django, 1126 of its 1964 files, for completions of
# packages the site does not hold. Every file is one more to unpack at each kernel start.
TRIM = {"jedi": ("jedi/third_party/django-stubs/", "jedi/third_party/typeshed/third_party/")}
# Left as source (compiled in the browser if ever imported): pygments' 260 lexers and 48 styles,
# which the kernel and the lessons do not import (IPython: the Python lexer, the styles' mapping and
# a few styles), so that their bytecode is not unpacked at every kernel start.
SOURCE_ONLY = {"pygments": (("pygments/lexers/", "pygments/styles/"),
                            ("pygments/lexers/__init__.py", "pygments/lexers/_mapping.py", "pygments/lexers/python.py",
                             "pygments/styles/__init__.py", "pygments/styles/_mapping.py"))}
# The kernel's pyodideUrl (boot.mjs beside this module): Pyodide's loadPyodide, then the kernel's
# start-up imports before the kernel mounts its drive (see there)
BOOT = "boot.mjs"
CORE_FILES = ("pyodide.mjs", "pyodide.js", "pyodide.asm.mjs", "pyodide.asm.wasm", "package.json")
STDLIB = "python_stdlib.zip"


def labkit_wheel(dest: Path) -> Path:
    """A wheel of this checkout's labkit (the lessons and recordings inside: paths.SHIPPED)."""
    out = dest / "labkit-wheel"
    shutil.rmtree(out, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, paths.PROJECT], "building labkit's wheel")
    (whl,) = out.glob("labkit-*.whl")
    return whl


def kernel_own_wheels() -> dict[str, Path]:
    """The Pyodide kernel's own wheels (KERNEL_OWN), from jupyterlite-pyodide-kernel's labextension."""
    from jupyter_core.paths import jupyter_path

    for folder in (Path(p) / KERNEL_OWN_DIR for p in jupyter_path("labextensions")):
        found = {name: sorted(folder.glob(f"{name.replace('-', '_')}-*-py3-none-any.whl")) for name in KERNEL_OWN}
        if all(found.values()):
            return {name: wheels[-1] for name, wheels in found.items()}
    raise LabError("jupyterlite-pyodide-kernel's wheels (piplite, pyodide-kernel) are not installed",
                   fix="pip install -e '.[lite]'")


def trimmed(wheel: Path, drop: tuple[str, ...]) -> Path:
    """wheel without the files under the folders in drop (each left as an empty folder, its RECORD
    lines gone), once into the cache."""
    out = cache() / "trimmed" / _sha256(wheel)[:20] / wheel.name  # the wheel's own name: the lock's
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    gone = lambda name: name.startswith(drop)  # noqa: E731
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(f"{out}.part", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True) if not gone(line.decode()))
            if not gone(info.filename):
                zout.writestr(info, data)
        for folder in drop:
            zout.writestr(zipfile.ZipInfo(folder), b"")
    Path(f"{out}.part").rename(out)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def lock(core: dict, kernel: dict, course: dict) -> dict:
    """The site's pyodide-lock.json: the core's entries for the kernel's packages (kernel: lock name ->
    wheel), with the wheels' names and hashes, and an entry per course package or kernel's own wheel
    (course: name -> wheel, as COURSE and KERNEL_OWN say)."""
    packages = {}
    for name, wheel in kernel.items():
        entry = dict(core["packages"][name])
        entry.update(file_name=wheel.name, sha256=_sha256(wheel), version=_version(wheel), unvendored_tests=False)
        packages[name] = entry
    for name, wheel in course.items():
        imports, depends = {**COURSE, **KERNEL_OWN}[name]
        packages[name] = {"name": name, "version": _version(wheel), "file_name": wheel.name, "install_dir": "site",
                          "sha256": _sha256(wheel), "package_type": "package", "imports": imports,
                          "depends": depends, "unvendored_tests": False}
    canon = lambda n: n.lower().replace("_", "-")  # noqa: E731 - the lock writes both spellings
    missing = {canon(d) for p in packages.values() for d in p["depends"]} - {canon(n) for n in packages}
    if missing:
        raise LabError(f"the site's Pyodide lock needs packages it does not hold: {', '.join(sorted(missing))}")
    return {"info": core["info"], "packages": packages}


def pyodide_folder(dest: Path, work: Path, say=print) -> dict:
    """Fill dest with the site's Pyodide (core, wheels, lock); what went in (for the build report)."""
    say(f"Pyodide {PYODIDE}: the core from npm (cached after the first build)")
    core_dir = npm_package(f"pyodide@{PYODIDE}")
    core = json.loads((core_dir / "pyodide-lock.json").read_text())
    if not core["info"]["python"].startswith(PYTHON):
        raise LabError(f"pyodide@{PYODIDE} is Python {core['info']['python']}, not {PYTHON}")
    say(f"the kernel's {len(KERNEL_PACKAGES)} packages from PyPI, at the lock's versions")
    specs = [f"{n}=={core['packages'][n]['version']}" for n in KERNEL_PACKAGES]
    kernel = dict(zip(KERNEL_PACKAGES, pypi_wheels(specs, PYTHON)))
    kernel.update({name: trimmed(kernel[name], drop) for name, drop in TRIM.items()})
    say("the course: labkit's wheel, graphviz, ipywidgets")
    course = {"labkit": labkit_wheel(work)}
    others = [n for n in COURSE if n != "labkit"]
    course.update(zip(others, pypi_wheels([f"{n}=={metadata.version(n)}" for n in others], PYTHON)))
    course.update(kernel_own_wheels())
    say("compiling the standard library and the wheels to bytecode (cached)")
    compiled = compile_zips(core_dir, [core_dir / STDLIB, *kernel.values(), *course.values()], work,
                            {kernel[name].name: how for name, how in SOURCE_ONLY.items()})
    dest.mkdir(parents=True, exist_ok=True)
    for f in CORE_FILES:
        shutil.copy2(core_dir / f, dest / f)
    shutil.copy2(Path(__file__).with_name(BOOT), dest / BOOT)
    for src, pyc in compiled.items():
        shutil.copy2(pyc, dest / src.name)
    kernel = {name: dest / w.name for name, w in kernel.items()}
    course = {name: dest / w.name for name, w in course.items()}
    (dest / "pyodide-lock.json").write_text(json.dumps(lock(core, kernel, course), indent=1))
    return {"pyodide": PYODIDE, "wheels": sorted(w.name for w in [*kernel.values(), *course.values()])}
