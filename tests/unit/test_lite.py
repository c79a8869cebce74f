"""The static site's parts that make a kernel start fast, without a browser (the browser test,
tests/browser/test_lite.py, runs the built site): the lock that lets Pyodide load the kernel's
packages in one go, the trimmed and compiled wheels, the kernel's boot.mjs in the site's settings,
and the service worker that keeps the site for a second visit.
"""

import base64
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from labkit import paths
from labkit.errors import LabError
from labkit.lite import bytecode, pyodide, serviceworker, site

BOOT = Path(pyodide.__file__).with_name(pyodide.BOOT)
# npm's Pyodide in the user's cache, where a site build has fetched it (no registry is asked here)
NPM_PYODIDE = paths.cache_dir() / "lite" / "npm" / f"pyodide@{pyodide.PYODIDE}"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The build's cache (trimmed and compiled wheels) in the test's folder, not the user's."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))


def wheel(path, files):
    """A wheel at path holding files (name -> text), with a RECORD naming them."""
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("pkg-1.0.dist-info/RECORD", "".join(f"{n},sha256=x,1\n" for n in files))
    return path


def test_the_lock_holds_every_package_the_kernel_preloads(tmp_path):
    """loadPyodideOptions.packages names only what the lock holds (else Pyodide fails to start), and
    the lock holds the Pyodide kernel's own wheels with what they depend on."""
    kernel = {n: wheel(tmp_path / f"{n.replace('-', '_')}-1.0-py3-none-any.whl", {}) for n in pyodide.KERNEL_PACKAGES}
    course = {n: wheel(tmp_path / f"{n.replace('-', '_')}-1.0-py3-none-any.whl", {})
              for n in [*pyodide.COURSE, *pyodide.KERNEL_OWN]}
    core = {"info": {"python": "3.14.2"},
            "packages": {n: {"name": n, "imports": [n], "depends": [], "install_dir": "site"} for n in kernel}}
    lock = pyodide.lock(core, kernel, course)
    assert set(pyodide.PRELOAD) <= set(lock["packages"])
    assert lock["packages"]["pyodide-kernel"]["imports"] == ["pyodide_kernel"]
    assert lock["packages"]["piplite"]["depends"] == ["micropip"]


def test_trimming_a_wheel_leaves_its_folders_empty_and_its_record_whole(tmp_path):
    src = wheel(tmp_path / "jedi-1.0-py3-none-any.whl", {
        "jedi/__init__.py": "", "jedi/third_party/typeshed/stdlib/3/os.pyi": "",
        "jedi/third_party/typeshed/third_party/3/six.pyi": "", "jedi/third_party/django-stubs/django-stubs/x.pyi": ""})
    out = pyodide.trimmed(src, pyodide.TRIM["jedi"])
    assert out.name == src.name  # the lock's file name
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        record = z.read("pkg-1.0.dist-info/RECORD").decode()
    assert "jedi/third_party/typeshed/stdlib/3/os.pyi" in names and "jedi/__init__.py" in names
    assert not any(n.endswith(".pyi") and "third_party/3" in n or "django-stubs/x" in n for n in names)
    # jedi lists typeshed/third_party: it must be there, empty
    assert {"jedi/third_party/typeshed/third_party/", "jedi/third_party/django-stubs/"} <= names
    assert "six.pyi" not in record and "os.pyi" in record
    assert pyodide.trimmed(src, pyodide.TRIM["jedi"]) == out  # from the cache the second time


def test_the_site_boots_pyodide_through_labkit(tmp_path):
    """jupyter lite build writes the Pyodide folder's pyodide.mjs as the kernel's pyodideUrl; the site
    gets boot.mjs there instead, and refuses a Pyodide folder without it."""
    (tmp_path / "static" / "pyodide").mkdir(parents=True)
    config = {"jupyter-config-data": {"litePluginSettings": {site.KERNEL_PLUGIN: {
        "pyodideUrl": "./static/pyodide/pyodide.mjs", "loadPyodideOptions": {"packages": list(pyodide.PRELOAD)}}}}}
    (tmp_path / "jupyter-lite.json").write_text(json.dumps(config))
    with pytest.raises(LabError, match="boot.mjs"):
        site.use_boot(tmp_path)
    shutil.copy2(BOOT, tmp_path / "static" / "pyodide")
    site.use_boot(tmp_path)
    settings = json.loads((tmp_path / "jupyter-lite.json").read_text())["jupyter-config-data"]["litePluginSettings"]
    assert settings[site.KERNEL_PLUGIN]["pyodideUrl"] == "./static/pyodide/boot.mjs"
    assert settings[site.KERNEL_PLUGIN]["loadPyodideOptions"]["packages"] == list(pyodide.PRELOAD)


def test_boot_imports_what_the_kernel_imports_at_start():
    """boot.mjs imports the kernel's modules only when they are preloaded (else the import would fail)."""
    boot = BOOT.read_text()
    assert 'export { version }' in boot and "export async function loadPyodide(options)" in boot
    for package, module in (("pyodide-kernel", "pyodide_kernel"), ("piplite", "piplite.piplite")):
        assert package in pyodide.PRELOAD
        assert f'packages.includes("{package}")) py.runPython("import {module}")' in boot


def test_the_service_worker_goes_before_jupyterlites_and_names_the_build(tmp_path):
    (tmp_path / "service-worker.js").write_text('"use strict";const CACHE="precache";')
    (tmp_path / "index.html").write_text("<html>")
    report = serviceworker.add_service_worker(tmp_path)
    worker = (tmp_path / "service-worker.js").read_text()
    assert worker.startswith(serviceworker.MARK) and worker.endswith('"use strict";const CACHE="precache";')
    assert "stopImmediatePropagation" in worker  # JupyterLite's handler answers only what labkit's leaves
    assert json.loads((tmp_path / serviceworker.BUILD).read_text()) == {"build": report["build"]}
    with pytest.raises(LabError, match="already"):
        serviceworker.add_service_worker(tmp_path)


def test_the_build_name_changes_with_any_file_of_the_site(tmp_path):
    (tmp_path / "a.js").write_text("1")
    first = serviceworker.build_id(tmp_path)
    (tmp_path / "service-worker.js").write_text("written after the name")
    assert serviceworker.build_id(tmp_path) == first
    (tmp_path / "a.js").write_text("2")
    assert serviceworker.build_id(tmp_path) != first


@pytest.fixture()
def pyodide_npm():
    if not (NPM_PYODIDE / "pyodide.mjs").exists() or not shutil.which("node"):
        pytest.skip("needs node and npm's Pyodide in the cache (labkit lite build fetches it)")
    return NPM_PYODIDE


def test_wheels_and_the_standard_library_are_compiled_by_the_sites_own_python(tmp_path, pyodide_npm):
    src = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {
        "pkg/__init__.py": "X = 1\n", "pkg/lexers/big.py": "Y = 2\n", "pkg/lexers/used.py": "Z = 3\n",
        "pkg/old.py": "print 'python 2'\n"})
    stdlib = tmp_path / "python_stdlib.zip"
    with zipfile.ZipFile(stdlib, "w") as z:
        z.writestr("json/__init__.py", "A = 1\n")
    work = tmp_path / "work"
    work.mkdir()
    done = bytecode.compile_zips(pyodide_npm, [src, stdlib], work,
                                 {src.name: (("pkg/lexers/",), ("pkg/lexers/used.py",))})
    with zipfile.ZipFile(done[src]) as z:
        names = set(z.namelist())
        record = z.read("pkg-1.0.dist-info/RECORD").decode()
        pyc = z.read("pkg/__pycache__/__init__.cpython-314.pyc")
    assert {"pkg/__init__.py", "pkg/__pycache__/__init__.cpython-314.pyc",
            "pkg/lexers/__pycache__/used.cpython-314.pyc"} <= names
    assert "pkg/lexers/__pycache__/big.cpython-314.pyc" not in names   # left as source
    assert "pkg/__pycache__/old.cpython-314.pyc" not in names           # not Python 3: left as it was
    assert int.from_bytes(pyc[4:8], "little") == 0b01                   # hash-based, never checked (PEP 552)
    digest = base64.urlsafe_b64encode(hashlib.sha256(pyc).digest()).rstrip(b"=").decode()
    assert f"pkg/__pycache__/__init__.cpython-314.pyc,sha256={digest},{len(pyc)}\n" in record
    with zipfile.ZipFile(done[stdlib]) as z:
        assert {"json/__init__.py", "json/__init__.pyc"} <= set(z.namelist())  # zipimport reads it beside the source
    assert bytecode.compile_zips(pyodide_npm, [src], work, {src.name: (("pkg/lexers/",), ("pkg/lexers/used.py",))}) \
        == {src: done[src]}  # cached
