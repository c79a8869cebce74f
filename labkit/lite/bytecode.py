"""Python bytecode for the site's Pyodide, compiled at build time so the browser does not.

npm's Pyodide ships its standard library (``python_stdlib.zip``) as source only, the
wheels from PyPI are source only, and Pyodide's Python writes no ``__pycache__``
(``sys.dont_write_bytecode``): so every visit compiled every module it imported, the
interpreter's own start-up included. Measured in Node on this Pyodide: start-up 2.5 s
-> 1.1 s with the standard library compiled, ``import IPython`` and the kernel's other
imports 2.1 s -> 0.8 s with the wheels compiled.

Only a Python 3.14 can write 3.14 bytecode, so the site's own Pyodide does it, run by
Node. Each ``.py`` gets an unchecked-hash ``.pyc`` beside it (PEP 552: never compared
with the source, whose unpacked files carry no dependable mtime), the source stays for
tracebacks: ``json/__init__.pyc`` next to the source in the standard library's zip
(zipimport reads it first), ``__pycache__/NAME.cpython-314.pyc`` in a wheel, listed in
its RECORD. A compiled zip is cached under its source's hash.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from labkit.errors import LabError
from labkit.lite.registry import cache, run

# Run inside Pyodide: compile_zip(src, dst, prefix, wheel) for each job.
IN_PYODIDE = r'''
import base64, hashlib, importlib.util, json, sys, warnings, zipfile
from importlib._bootstrap_external import _code_to_hash_pyc

warnings.simplefilter("ignore")  # old escapes in some tests' source: SyntaxWarning, not our concern


def pyc_name(name, wheel):
    if not wheel:
        return name + "c"
    folder, _, base = name.rpartition("/")
    return f"{folder + '/' if folder else ''}__pycache__/{base[:-3]}.{sys.implementation.cache_tag}.pyc"


def compile_zip(src, dst, prefix, wheel, source_only=(), keep=()):
    record, added = None, []
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if wheel and info.filename.endswith(".dist-info/RECORD"):
                record = (info, data)
                continue
            zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            if not info.filename.endswith(".py"):
                continue
            if info.filename.startswith(tuple(source_only)) and info.filename not in keep:
                continue
            try:
                code = compile(data, prefix + info.filename, "exec", dont_inherit=True)
            except SyntaxError:
                continue  # not Python 3.14 (a vendored test file): left as source
            pyc = bytes(_code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False))
            name = pyc_name(info.filename, wheel)
            zout.writestr(name, pyc)
            added.append((name, pyc))
        if record:
            lines = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},"
                            f"{len(b)}\n" for n, b in added)
            zout.writestr(record[0], record[1].rstrip(b"\n") + b"\n" + lines.encode(),
                          compress_type=zipfile.ZIP_DEFLATED)
    return len(added)


for job in json.loads(JOBS):
    compile_zip("/host" + job["src"], "/host" + job["dst"], job["prefix"], job["wheel"],
                job["source_only"], job["keep"])
'''

# Node: start the Pyodide in argv[1], the host's / at /host, run IN_PYODIDE on the jobs in argv[2].
NODE = r'''
import fs from "node:fs";
const [, dir, jobs, code] = process.argv;
const { loadPyodide } = await import(dir + "/pyodide.mjs");
const py = await loadPyodide({ indexURL: dir + "/" });
py.FS.mkdirTree("/host");
py.FS.mount(py.FS.filesystems.NODEFS, { root: "/" }, "/host");
py.globals.set("JOBS", fs.readFileSync(jobs, "utf8"));
py.runPython(fs.readFileSync(code, "utf8"));
'''

STDLIB_PREFIX = "/lib/python314.zip/"               # where Pyodide puts the standard library's zip
SITE_PACKAGES = "/lib/python3.14/site-packages/"    # where it unpacks a wheel


def _key(path: Path, *more) -> str:
    """The cache's name for path compiled: its content's hash, and what else decides the result."""
    return hashlib.sha256(path.read_bytes() + json.dumps(more).encode()).hexdigest()[:20]


def compile_zips(pyodide_dir: Path, zips: list[Path], work: Path, source_only=None) -> dict[Path, Path]:
    """Each zip (the standard library's, or a wheel) compiled by the Pyodide in pyodide_dir (npm's
    package: its own source-only standard library is what it starts with); source -> compiled
    copy, from the cache when compiled before. source_only: a zip's name -> (folders left as
    source, files in them compiled all the same)."""
    out = cache() / "pyc"
    out.mkdir(parents=True, exist_ok=True)
    done, jobs = {}, []
    for src in zips:
        skip, keep = (source_only or {}).get(src.name, ((), ()))
        dst = out / _key(src, skip, keep) / src.name
        done[src] = dst
        if not dst.exists():
            dst.parent.mkdir(exist_ok=True)
            jobs.append({"src": str(src), "dst": str(dst) + ".part", "wheel": src.suffix == ".whl",
                         "prefix": SITE_PACKAGES if src.suffix == ".whl" else STDLIB_PREFIX,
                         "source_only": list(skip), "keep": list(keep)})
    if jobs:
        if not shutil.which("node"):
            raise LabError("compiling the site's Python needs Node", fix="sudo apt-get install nodejs npm")
        (work / "pyc-jobs.json").write_text(json.dumps(jobs))
        (work / "pyc-compile.py").write_text(IN_PYODIDE)
        run(["node", "--input-type=module", "-e", NODE, pyodide_dir, work / "pyc-jobs.json", work / "pyc-compile.py"],
            "compiling the site's Python to bytecode (Pyodide in Node)", timeout=600,
            fix="node --version should say v18 or later (sudo apt-get install nodejs)")
        for job in jobs:
            Path(job["dst"]).rename(job["dst"][:-len(".part")])
    return done
