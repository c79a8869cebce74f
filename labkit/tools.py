"""Host tools the lab needs, and the Debian package that provides each."""

import shutil

from labkit.errors import MissingTool

# program -> Debian package
PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "clang": "clang",
    "dot": "graphviz",
    "chromium": "chromium",
    "llvm-strip": "llvm",
    "bpftool": "bpftool",
    "make": "make",
    "gcc": "gcc",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "pahole": "dwarves",
    "objcopy": "binutils",
    "tar": "tar",
    "xz": "xz-utils",
    "patch": "patch",
    "cpio": "cpio",
    "ip": "iproute2",
    "tc": "iproute2",
}

KERNEL_BUILD_TOOLS = ["make", "gcc", "flex", "bison", "bc", "pahole", "objcopy", "tar", "xz", "patch", "cpio", "bpftool"]


def in_browser() -> bool:
    """True where labkit runs in the browser (Pyodide: the JupyterLite site), with no subprocess, no
    host tools and no lab VM; $LABKIT_BROWSER=1 stands for it in the tests that check that path."""
    import os
    import sys

    return sys.platform == "emscripten" or os.environ.get("LABKIT_BROWSER") == "1"


def which(program):
    if in_browser():
        return None
    return shutil.which(program, path=_search_path())


def _search_path():
    import os

    # bpftool and tc live in /usr/sbin, which is not on every user's PATH.
    extra = ["/usr/sbin", "/sbin"]
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(parts + [p for p in extra if p not in parts])


def require(*programs):
    """Return the path of each program, or raise MissingTool naming the package."""
    found, missing = [], []
    for program in programs:
        path = which(program)
        if path:
            found.append(path)
        else:
            missing.append(program)
    if missing:
        pkgs = sorted({PACKAGES.get(p, p) for p in missing})
        raise MissingTool(
            f"{', '.join(missing)} not found",
            fix=f"install it: sudo apt-get install {' '.join(pkgs)} (or run ./lab setup)",
        )
    return found[0] if len(found) == 1 else found
