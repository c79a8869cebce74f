"""Compile the lab's BPF programs against the lab kernel's ``vmlinux.h``.

``bpf/*.bpf.c`` and ``bpf/fail/*.bpf.c`` become ``bpf/build/<stem>.bpf.o``
(``bpf/build/fail/...`` for the programs the verifier rejects on purpose).
An object is rebuilt when its source, a header in ``bpf/include`` or
``vmlinux.h`` is newer. clang's errors come back as a ``BpfBuildError``
whose details are clang's own ``file:line: error`` lines.
"""

import subprocess
from pathlib import Path

from labkit import paths, tools
from labkit.errors import BpfBuildError


def cflags(kernel_dir: Path) -> list[str]:
    return [
        "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
        "-Wall", "-Wno-unused-function", "-Wno-compare-distinct-pointer-types",
        f"-I{paths.BPF_DIR / 'include'}", f"-I{kernel_dir}",
    ]


def sources() -> list[Path]:
    return sorted(paths.BPF_DIR.glob("*.bpf.c")) + sorted((paths.BPF_DIR / "fail").glob("*.bpf.c"))


def object_for(src: Path) -> Path:
    rel = src.relative_to(paths.BPF_DIR)
    return paths.bpf_build_dir() / rel.parent / (src.name[: -len(".c")] + ".o")


def compile_one(src: Path, obj: Path, kernel_dir: Path, *, verbose=False) -> Path:
    clang = tools.require("clang")
    obj.parent.mkdir(parents=True, exist_ok=True)
    argv = [clang, *cflags(kernel_dir), "-c", str(src), "-o", str(obj)]
    if verbose:
        print(" ".join(argv))
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        obj.unlink(missing_ok=True)
        first = next((line for line in res.stderr.splitlines() if "error:" in line), res.stderr.strip()[:200])
        raise BpfBuildError(
            f"clang could not compile {src.name}: {first}",
            fix="fix the C source at the line shown",
            details=res.stderr,
        )
    return obj


def stale(src: Path, obj: Path, deps: list[Path]) -> bool:
    if not obj.exists():
        return True
    t = obj.stat().st_mtime
    return any(d.stat().st_mtime > t for d in [src, *deps])


def build_all(*, verbose=False, kernel_dir=None) -> list[Path]:
    """Compile every stale object; return all object paths."""
    from labkit import kernel

    kernel_dir = Path(kernel_dir) if kernel_dir else kernel.kernel_path()
    deps = sorted((paths.BPF_DIR / "include").glob("*.h")) + [kernel_dir / "vmlinux.h"]
    objs = []
    for src in sources():
        obj = object_for(src)
        if stale(src, obj, deps):
            compile_one(src, obj, kernel_dir, verbose=verbose)
        objs.append(obj)
    return objs


def obj_path(stem: str) -> Path:
    """``bpf/build/<stem>.bpf.o``, with a clear error if it was not built."""
    obj = paths.bpf_build_dir() / f"{stem}.bpf.o"
    if not obj.exists():
        raise BpfBuildError(f"{obj} is not built", fix="run: labkit bpf build")
    return obj
