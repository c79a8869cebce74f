"""labkit's layout holds: subpackages by concern that import, modules that read on their own.

The layers and the no-cycle rule are import-linter's contracts (pyproject.toml), run by
``./lab test`` as ``lint-imports``; here, what import-linter does not look at: every subpackage
and its exported names import, no module is named with an old prefix or runs past ~400 lines,
no private name is imported from another module, and nothing imports a name from a module that
only imported it itself (a re-export: callers import from where a name is defined).
"""

import ast
import subprocess
import sys

from labkit import paths

LABKIT = paths.PROJECT / "labkit"
SUBPACKAGES = ("kernel", "guest", "vm", "bpf", "runtime", "scenarios", "viz", "bench", "course", "hub", "lite")
MAX_LINES = 400


def modules():
    return sorted(p for p in LABKIT.rglob("*.py") if "jupyter_config" not in p.parts)


def sources():
    """Every tracked Python file of the checkout."""
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=paths.PROJECT, capture_output=True, text=True, check=True)
    return [paths.PROJECT / f for f in out.stdout.split()]


def test_every_subpackage_and_its_exports_import():
    code = ("import importlib\n"
            f"for name in {SUBPACKAGES!r}:\n"
            "    pkg = importlib.import_module('labkit.' + name)\n"
            "    for attr in getattr(pkg, '__all__', ()):\n"
            "        getattr(pkg, attr)\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=paths.PROJECT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_the_top_is_small_and_the_rest_is_in_subpackages():
    top = sorted(p.stem for p in LABKIT.glob("*.py"))
    assert top == ["__init__", "cli", "demo", "errors", "paths", "progress", "testrun", "tools"]
    assert sorted(p.name for p in LABKIT.iterdir() if (p / "__init__.py").exists()) == sorted(SUBPACKAGES)


def test_no_module_keeps_an_old_prefix():
    """Inside a subpackage a name loses its prefix (viz/lifetime.py, not viz_lifetime.py), and no
    import names a flat module with one (the check the layout issue asks anyone to run)."""
    prefixes = ("viz", "runtime", "libbpf", "kernel", "lesson", "exercise", "bench", "lite", "vm")
    prefixed = [str(p.relative_to(LABKIT)) for p in modules() if p.stem.startswith(tuple(f"{x}_" for x in prefixes))]
    assert prefixed == []
    grep = subprocess.run(["git", "grep", "-n", "-E", r"^from labkit\.[a-z_]*_[a-z_]* import"], cwd=paths.PROJECT,
                          capture_output=True, text=True)
    assert grep.stdout == ""


def test_no_module_is_over_the_size_a_module_reads_in():
    long = {str(p.relative_to(LABKIT)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, "split these along what they do, inside their subpackage"


def _imports_from_labkit(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("labkit"):
            yield node


def test_no_private_name_is_imported_from_another_module():
    found = []
    for f in sources():
        for node in _imports_from_labkit(ast.parse(f.read_text())):
            found += [f"{f.relative_to(paths.PROJECT)}:{node.lineno} {node.module}.{a.name}"
                      for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def _defined(module: str):
    """What module defines itself (its top-level classes, functions and assignments), or None for
    a package (its __init__ exports its modules' names) or a module outside labkit."""
    path = paths.PROJECT / (module.replace(".", "/") + ".py")
    if not path.exists():
        return None
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def test_names_are_imported_from_where_they_are_defined():
    found = []
    for f in sources():
        for node in _imports_from_labkit(ast.parse(f.read_text())):
            defined = _defined(node.module)
            if defined is None:
                continue
            found += [f"{f.relative_to(paths.PROJECT)}:{node.lineno} {node.module}.{a.name}"
                      for a in node.names if a.name not in defined]
    assert found == []


def test_every_module_run_with_python_m_has_a_main():
    """Every labkit module run with ``python -m`` anywhere (a guest command, a test, a doc) has a main."""
    grep = subprocess.run(["git", "grep", "-ohE", r"(-m\"?, \"|-m )labkit(\.[a-z_]+)+"], cwd=paths.PROJECT,
                          capture_output=True, text=True)
    named = {m.split("labkit", 1)[1] for m in grep.stdout.split("\n") if m}
    assert named
    silent = [f"labkit{m}" for m in sorted(named)
              if "__main__" not in (LABKIT / (m.strip(".").replace(".", "/") + ".py")).read_text()]
    assert silent == []
