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
  from the lock) with no ``%pip``.

Every other entry is dropped: a package the site does not hold must fail to
import, never go to the internet.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

from labkit import paths
from labkit.errors import LabError

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
CORE_FILES = ("pyodide.mjs", "pyodide.js", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
              "package.json")


def run(argv, what, *, cwd=None, timeout=600):
    """Run a build step; a failure says which step and what it printed."""
    try:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except FileNotFoundError:
        raise LabError(f"{what}: {argv[0]} is not installed", fix="./lab setup (npm: sudo apt-get install npm)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: no answer in {timeout} s", fix="check the network to the package registries") from None
    if r.returncode != 0:
        raise LabError(f"{what} failed: {(r.stderr or r.stdout).strip()[-1500:]}",
                       fix="check the network to the package registries (npm, PyPI)")
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


def pypi_wheels(specs, python=PYTHON) -> list[Path]:
    """Pure-Python wheels for specs ("name==version"), from PyPI once into the cache."""
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


def labkit_wheel(dest: Path) -> Path:
    """A wheel of this checkout's labkit (the lessons and recordings inside: paths.SHIPPED)."""
    out = dest / "labkit-wheel"
    shutil.rmtree(out, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, paths.PROJECT], "building labkit's wheel")
    (whl,) = out.glob("labkit-*.whl")
    return whl


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def lock(core: dict, kernel: dict, course: dict) -> dict:
    """The site's pyodide-lock.json: the core's entries for the kernel's packages (kernel: lock name ->
    wheel), with the wheels' names and hashes, and an entry per course package (course: name -> wheel)."""
    packages = {}
    for name, wheel in kernel.items():
        entry = dict(core["packages"][name])
        entry.update(file_name=wheel.name, sha256=_sha256(wheel), version=_version(wheel), unvendored_tests=False)
        packages[name] = entry
    for name, wheel in course.items():
        imports, depends = COURSE[name]
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
    kernel = dict(zip(KERNEL_PACKAGES, pypi_wheels([f"{n}=={core['packages'][n]['version']}" for n in KERNEL_PACKAGES])))
    say("the course: labkit's wheel, graphviz, ipywidgets")
    course = {"labkit": labkit_wheel(work)}
    others = [n for n in COURSE if n != "labkit"]
    course.update(zip(others, pypi_wheels([f"{n}=={metadata.version(n)}" for n in others])))
    dest.mkdir(parents=True, exist_ok=True)
    for f in CORE_FILES:
        shutil.copy2(core_dir / f, dest / f)
    for wheel in [*kernel.values(), *course.values()]:
        shutil.copy2(wheel, dest / wheel.name)
    (dest / "pyodide-lock.json").write_text(json.dumps(lock(core, kernel, course), indent=1))
    return {"pyodide": PYODIDE, "wheels": sorted(w.name for w in [*kernel.values(), *course.values()])}
