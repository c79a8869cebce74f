"""Bad input from the command line: one line saying what failed and what
to run, exit status 2, nothing left running. No VM needed."""

import os

from labkit import paths
from tests.host.conftest import lab_qemus, labkit


def one_line_error(res):
    """The error line (progress lines may come before it)."""
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("labkit: ")]
    assert len(lines) == 1, f"expected one error line: {res.stderr}"
    assert " -- " in lines[0], f"the error does not say what to do: {lines[0]}"
    return lines[0]


def test_missing_kernel(tmp_path):
    res = labkit("vm", "run", "--", "true", env={"LABKIT_CACHE": str(tmp_path), "LABKIT_SHARED_KERNELS": ""})
    assert res.returncode == 2
    line = one_line_error(res)
    assert "no lab kernel is built" in line and "labkit kernel build" in line
    assert not lab_qemus()


def test_kernel_path_without_kernel(tmp_path):
    res = labkit("kernel", "path", env={"LABKIT_CACHE": str(tmp_path), "LABKIT_SHARED_KERNELS": ""})
    assert res.returncode == 2
    assert "labkit kernel build" in one_line_error(res)


def test_missing_kernel_source(tmp_path):
    res = labkit("kernel", "build", env={"LABKIT_CACHE": str(tmp_path),
                                         "LABKIT_KERNEL_SOURCE": str(tmp_path / "no-such.tar.xz")})
    assert res.returncode == 2
    line = one_line_error(res)
    assert "not found" in line and "apt-get install linux-source-6.12" in line


def test_missing_qemu(tmp_path):
    kdir = tmp_path / "kernel"
    kdir.mkdir()
    (kdir / "vmlinux").write_bytes(b"\x7fELF")
    cache = tmp_path / "cache"
    res = labkit("vm", "run", "--", "true",
                 env={"PATH": str(tmp_path), "LABKIT_KERNEL_DIR": str(kdir), "LABKIT_ACCEL": "tcg",
                      "LABKIT_CACHE": str(cache)})
    assert res.returncode == 2
    line = one_line_error(res)
    assert "qemu-system-x86_64 not found" in line and "apt-get install qemu-system-x86" in line
    assert not lab_qemus()
    assert not list(paths.run_dir().glob("run-*")), "a failed start left its run directory behind"


def test_load_on_the_host_points_at_the_vm():
    res = labkit("bpf", "load", "bpf/build/storage_basic.bpf.o", env={"LABKIT_GUEST": ""})
    assert res.returncode == 2
    assert "labkit vm run -- labkit bpf load" in one_line_error(res)


def test_vm_run_without_command():
    res = labkit("vm", "run")
    assert res.returncode == 2
    assert "usage: labkit vm run -- CMD" in one_line_error(res)


def test_clang_error_points_at_the_line(tmp_path):
    import pytest

    from labkit import kernel
    from labkit.bpf.build import compile_one
    from labkit.errors import BpfBuildError
    from tests.conftest import need

    try:
        kdir = kernel.kernel_path()
    except Exception as exc:  # noqa: BLE001
        need(False, str(exc), "run: labkit kernel build")
    src = tmp_path / "broken.bpf.c"
    src.write_text('#include "skb_storage.h"\nint x(void) { return undefined_thing; }\n')
    with pytest.raises(BpfBuildError) as exc:
        compile_one(src, tmp_path / "broken.bpf.o", kdir)
    assert "broken.bpf.c:2:" in exc.value.details
    assert "undefined_thing" in exc.value.message


def test_env_is_not_leaking():
    assert os.environ.get("LABKIT_GUEST") != "1", "host tests must not run in the guest"
