"""How the VM is put together, without booting it."""

import os

import pytest

from labkit import paths
from labkit.errors import LabError, VMError
from labkit.vm import accel, guestenv, qemu
from labkit.vm import lab as vm


def test_qemu_argv_boots_vmlinux_over_9p(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(qemu.tools, "require", lambda *a: "/usr/bin/qemu-system-x86_64")
    argv = qemu.qemu_argv(tmp_path / "vmlinux", tmp_path, accel="tcg", cpus=2, memory="1G", python="/py",
                          workdir=tmp_path / "my lab")
    text = " ".join(argv)
    assert "-kernel " + str(tmp_path / "vmlinux") in text
    assert "tcg,thread=multi" in text and "-no-reboot" in argv
    assert f"init={paths.GUEST_DIR / 'init'}" in text
    assert "labkit.python=/py" in text
    assert "name=labkit.0" in text
    # The kernel command line is split on spaces: a path with one is encoded.
    assert f"labkit.work={tmp_path}/my%20lab" in text


def test_a_kasan_kernel_reports_every_fault(tmp_path, monkeypatch):
    """KASAN reports only its first fault by default: the debug kernel boots with kasan_multi_shot,
    so a test's own fault shows after a planted one; other kernels do not get the parameter."""
    monkeypatch.setattr(qemu.tools, "require", lambda *a: "/usr/bin/qemu-system-x86_64")

    def append(config):
        (tmp_path / "config").write_text(config)
        argv = qemu.qemu_argv(tmp_path / "bzImage", tmp_path, accel="tcg", cpus=2, memory="1G", python="/py",
                              workdir=tmp_path)
        return argv[argv.index("-append") + 1].split()

    assert "kasan_multi_shot" in append("CONFIG_BPF=y\nCONFIG_KASAN=y\n")
    assert "kasan_multi_shot" not in append("CONFIG_BPF=y\n# CONFIG_KASAN is not set\n")


def test_only_the_workdir_is_exported_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu.tools, "require", lambda *a: "/usr/bin/qemu-system-x86_64")
    work = tmp_path / "a,b"
    argv = qemu.qemu_argv(tmp_path / "vmlinux", tmp_path, accel="tcg", cpus=2, memory="1G", python="/py",
                          workdir=work)
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    writable = [f for f in fsdevs if "readonly=on" not in f.split(",")]
    assert any(f.startswith("local,id=root,path=/,") and "readonly=on" in f for f in fsdevs)
    assert writable == [f"local,id=work,path={tmp_path}/a,,b,security_model=none,multidevs=remap"]


@pytest.mark.parametrize("bad", ["/", "/etc", "/usr/lib", "/var", "/run/labkit", "/tmp"])
def test_a_system_folder_is_never_the_workdir(bad):
    with pytest.raises(VMError, match="only a working folder"):
        qemu.check_workdir(bad)


def test_the_workdir_must_exist(tmp_path):
    assert qemu.check_workdir(tmp_path) == tmp_path
    with pytest.raises(VMError, match="does not exist"):
        qemu.check_workdir(tmp_path / "nope")


def test_accel_is_tcg_under_pvm_or_without_kvm(monkeypatch):
    monkeypatch.delenv("LABKIT_ACCEL", raising=False)
    real_exists = os.path.exists
    monkeypatch.setattr(accel.os.path, "exists",
                        lambda p: {"/dev/kvm": True, "/sys/module/kvm_pvm": True}.get(p, real_exists(p)))
    choice, why = vm.choose_accel(None)
    assert choice == "tcg" and "PVM" in why
    monkeypatch.setattr(accel.os.path, "exists", lambda p: False if p == "/dev/kvm" else real_exists(p))
    assert vm.choose_accel(None) == ("tcg", "no /dev/kvm on this machine")


def test_accel_can_be_forced(monkeypatch):
    monkeypatch.setenv("LABKIT_ACCEL", "kvm")
    assert vm.choose_accel(None)[0] == "kvm"


def test_guest_env_puts_this_python_first(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    env = guestenv.guest_env({"EXTRA": 1})
    assert env["PATH"].split(":")[0] == os.path.dirname(vm.sys.executable)
    assert env["LABKIT_GUEST"] == "1" and env["CI"] == "true" and env["EXTRA"] == "1"
    assert "SECRET_TOKEN" not in env
    assert env["LABKIT_BPF_BUILD"] == str(paths.bpf_build_dir())


def test_run_dir_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("LABKIT_RUN_DIR", raising=False)
    d = paths.run_dir()
    assert d == tmp_path / "c" / "vm"
    assert (d.stat().st_mode & 0o777) == 0o700 and ((tmp_path / "c").stat().st_mode & 0o777) == 0o700


def test_icount_counts_instructions_on_one_single_threaded_vcpu(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu.tools, "require", lambda *a: "/usr/bin/qemu-system-x86_64")
    monkeypatch.setattr(qemu, "host_tsc_khz", lambda: 2_345_678)
    argv = qemu.qemu_argv(tmp_path / "vmlinux", tmp_path, accel="tcg", cpus=1, memory="1G", python="/py",
                          workdir=tmp_path, clock="icount")
    words = argv[argv.index("-append") + 1].split()
    assert argv[argv.index("-accel") + 1] == "tcg,thread=single"
    assert argv[argv.index("-icount") + 1] == "shift=0,sleep=off,align=off"
    assert argv[argv.index("-smp") + 1] == "1"
    assert "tsc_early_khz=1000000" in words and "tsc=reliable" in words and "labkit.clock=icount" in words
    assert "tsc_early_khz=2345678" not in words
    wall = qemu.qemu_argv(tmp_path / "vmlinux", tmp_path, accel="tcg", cpus=2, memory="1G", python="/py",
                          workdir=tmp_path)
    assert "-icount" not in wall and "tsc_early_khz=2345678" in wall[wall.index("-append") + 1].split()
    assert "labkit.clock=icount" not in " ".join(wall)


def test_lab_clock_choices():
    assert (vm.Lab().clock, vm.Lab().cpus, vm.Lab().accel) == ("wall", 2, None)
    lab = vm.Lab(clock="icount")
    assert (lab.accel, lab.cpus) == ("tcg", 1) and "icount" in lab.accel_why
    assert (vm.Lab(clock="icount", accel="tcg", cpus=4).cpus, vm.Lab(cpus=4).cpus) == (1, 4)
    with pytest.raises(LabError, match="clock='icount' cannot run under accel='kvm'") as err:
        vm.Lab(clock="icount", accel="kvm")
    assert "clock='wall'" in err.value.fix
    with pytest.raises(LabError, match="unknown lab VM clock 'cycles'"):
        vm.Lab(clock="cycles")
