"""The static site's parts that make a kernel start fast, without a browser (the browser test,
tests/browser/test_lite.py, runs the built site): the lock that lets Pyodide load the kernel's
packages in one go, the trimmed and compiled wheels, the kernel's boot.mjs in the site's settings
and its early start with the lab page, the plugins left off, and the service workers that keep
the site (and JupyterLab's scripts compiled) for a second visit.
"""

import base64
import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from labkit import paths
from labkit.errors import LabError
from labkit.lite import bytecode, early, pyodide, serviceworker, site

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


def kernel_site(tmp_path, workers=("comlink.worker.abc123.js",)):
    """A built site's parts the early kernel touches: the kernel's worker(s) and the lab page."""
    static = tmp_path / early.KERNEL_STATIC
    static.mkdir(parents=True)
    for name in workers:
        (static / name).write_text("export class PyodideComlinkKernel {}")
    (tmp_path / "lab").mkdir()
    (tmp_path / early.PAGE).write_text('<!DOCTYPE html><html>\n<head>\n    <title>JupyterLite</title>\n'
                                       '    <meta charset="utf-8">\n    <script>config()</script>\n</head></html>')
    return tmp_path


def test_the_kernels_worker_starts_first_in_the_lab_page(tmp_path):
    """The lab page creates the early worker before any of JupyterLab's scripts (after the charset,
    which must stay in the first 1024 bytes), and the early worker is the kernel's own worker script
    with boot.mjs's prestart of the packages the kernel preloads."""
    site_dir = kernel_site(tmp_path)
    report = early.add_early_kernel(site_dir, site.PYODIDE_DIR, pyodide.BOOT, pyodide.PRELOAD)
    worker = (site_dir / report["early_kernel"]).read_text()
    assert report["early_kernel"] == f"{early.KERNEL_STATIC}/{early.EARLY_WORKER}"
    assert 'import { prestart } from "../../../../static/pyodide/boot.mjs";' in worker
    assert 'import "./comlink.worker.abc123.js";' in worker
    assert 'new URL("../../../../static/pyodide/", import.meta.url)' in worker
    assert f"packages: {json.dumps(list(pyodide.PRELOAD))}" in worker
    page = (site_dir / early.PAGE).read_text()
    assert page.index('<meta charset="utf-8">') < page.index(early.MARK) < page.index("config()")
    assert page.index(early.MARK) < 1024 or page.index('<meta charset="utf-8">') < 1024
    for url in ("../extensions/@jupyterlite/pyodide-kernel-extension/static/comlink.worker.abc123.js",
                f"../{report['early_kernel']}", "../service-worker.js?enableCache=false",
                f"../{serviceworker.PRECACHE}", f"../{serviceworker.PRECACHE_SCOPE}"):
        assert f'"{url}"' in page
    assert not re.search(r"__[A-Z][A-Z_]*__", page + worker)  # every placeholder filled
    with pytest.raises(LabError, match="already"):
        early.add_early_kernel(site_dir, site.PYODIDE_DIR, pyodide.BOOT, pyodide.PRELOAD)


@pytest.mark.parametrize("workers", [(), ("comlink.worker.a.js", "comlink.worker.b.js")])
def test_the_early_kernel_needs_the_one_kernel_worker(tmp_path, workers):
    with pytest.raises(LabError, match="comlink.worker"):
        early.add_early_kernel(kernel_site(tmp_path, workers), site.PYODIDE_DIR, pyodide.BOOT, pyodide.PRELOAD)


def test_relative_urls_between_the_sites_files():
    boot = early.relative("static/pyodide/boot.mjs", f"{early.KERNEL_STATIC}/x.mjs")
    assert boot == "../../../../static/pyodide/boot.mjs"
    assert early.relative("service-worker.js", "lab/index.html") == "../service-worker.js"
    assert early.relative("a.js", "index.html") == "./a.js"
    with pytest.raises(LabError, match="__B__"):
        early.fill('"__A__" "__B__"', {"A": "x"})


def test_the_precaching_worker_is_written_for_the_build_and_left_out_of_its_name(tmp_path):
    """precache-worker.js names the build's cache as service-worker.js does; being written after the
    build's name is, it is not part of it (nor is a new one a new build)."""
    (tmp_path / "service-worker.js").write_text('"use strict";')
    (tmp_path / "a.js").write_text("1")
    report = serviceworker.add_service_worker(tmp_path)
    precache = (tmp_path / serviceworker.PRECACHE).read_text()
    assert f'const PRECACHE_BUILD = "{report["build"]}";' in precache
    assert 'const PRECACHE_SITE_CACHE = "labkit-site-" + PRECACHE_BUILD;' in precache
    assert 'const LABKIT_PREFIX = "labkit-site-";' in (tmp_path / "service-worker.js").read_text()
    assert 'addEventListener("install"' in precache and "cache.add(" in precache
    assert serviceworker.PRECACHE_SCOPE.startswith(serviceworker.PRECACHE.rsplit("/", 1)[0] + "/")  # its folder
    assert serviceworker.build_id(tmp_path) == report["build"]


def disabled(plugin):
    """Whether page config's disabledExtensions (site.DISABLED) turns plugin off, as JupyterLab
    reads it: the plugin's id, or its package's name."""
    return plugin in site.DISABLED or plugin.split(":")[0] in site.DISABLED


def test_the_plugins_the_lessons_need_stay_on():
    for plugin in ("@jupyterlab/notebook-extension:tracker", "@jupyterlab/notebook-extension:widget-factory",
                   "@jupyterlab/mainmenu-extension:plugin", "@jupyterlab/shortcuts-extension:shortcuts",
                   "@jupyterlab/rendermime-extension:plugin", "@jupyterlab/markedparser-extension:plugin",
                   "@jupyterlab/codemirror-extension:languages", "@jupyterlab/completer-extension:manager",
                   "@jupyterlab/tooltip-extension:notebooks", "@jupyterlab/filebrowser-extension:browser",
                   "@jupyterlab/documentsearch-extension:plugin", "@jupyterlab/help-extension:licenses-commands",
                   "@jupyterlab/theme-dark-extension:plugin", "@jupyterlab/running-extension:sidebar",
                   "@jupyter-widgets/jupyterlab-manager:plugin", site.KERNEL_PLUGIN, "jupyterlab_pygments:plugin"):
        assert not disabled(plugin), plugin
    # a plugin that needs a disabled one's service is disabled with it
    assert disabled("@jupyterlab/notebook-extension:update-raw-mimetype")  # needs the metadata forms
    assert disabled("@jupyterlab/tooltip-extension:consoles")              # needs the consoles


def test_boot_hands_the_prestarted_pyodide_to_the_kernel(tmp_path, pyodide_npm):
    """boot.mjs in Node: prestart loads Pyodide; the kernel's loadPyodide with the same folder and
    packages gets that one, with its own stdout; asked for another, it loads another."""
    for f in pyodide.CORE_FILES + ("pyodide-lock.json", pyodide.STDLIB):
        (tmp_path / f).symlink_to(pyodide_npm / f)
    shutil.copy2(BOOT, tmp_path / pyodide.BOOT)
    script = tmp_path / "run.mjs"
    script.write_text("""
const { prestart, loadPyodide } = await import(process.argv[2] + "/boot.mjs");
const options = { indexURL: process.argv[2] + "/", packages: [] };
const early = await prestart(options);
const lines = [];
const py = await loadPyodide({ ...options, stdout: (line) => lines.push(line) });
py.runPython("print('to the kernel')");
const other = await loadPyodide({ ...options, packages: [] });
console.log(JSON.stringify({ same: py === early, lines, again: other === py }));
""")
    out = subprocess.run(["node", script, tmp_path], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"same": True, "lines": ["to the kernel"], "again": False}
