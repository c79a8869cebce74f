"""How the VM is put together, without booting it."""

import os

from labkit import paths, vm


def test_qemu_argv_boots_vmlinux_over_9p(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(vm.tools, "require", lambda *a: "/usr/bin/qemu-system-x86_64")
    argv = vm.qemu_argv(tmp_path / "vmlinux", tmp_path, accel="tcg", cpus=2, memory="1G", python="/py")
    text = " ".join(argv)
    assert "-kernel " + str(tmp_path / "vmlinux") in text
    assert "tcg,thread=multi" in text and "-no-reboot" in argv
    assert "readonly=on" in text and "mount_tag=root" in text and "mount_tag=hostrw" in text
    assert f"init={paths.GUEST_DIR / 'init'}" in text
    assert "labkit.python=/py" in text
    assert "name=labkit.0" in text


def test_accel_is_tcg_under_pvm_or_without_kvm(monkeypatch):
    monkeypatch.delenv("LABKIT_ACCEL", raising=False)
    real_exists = os.path.exists
    monkeypatch.setattr(vm.os.path, "exists",
                        lambda p: {"/dev/kvm": True, "/sys/module/kvm_pvm": True}.get(p, real_exists(p)))
    accel, why = vm.choose_accel(None)
    assert accel == "tcg" and "PVM" in why
    monkeypatch.setattr(vm.os.path, "exists", lambda p: False if p == "/dev/kvm" else real_exists(p))
    assert vm.choose_accel(None) == ("tcg", "no /dev/kvm on this machine")


def test_accel_can_be_forced(monkeypatch):
    monkeypatch.setenv("LABKIT_ACCEL", "kvm")
    assert vm.choose_accel(None)[0] == "kvm"


def test_guest_env_puts_this_python_first(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    env = vm.guest_env({"EXTRA": 1})
    assert env["PATH"].split(":")[0] == os.path.dirname(vm.sys.executable)
    assert env["LABKIT_GUEST"] == "1" and env["CI"] == "true" and env["EXTRA"] == "1"
    assert "SECRET_TOKEN" not in env
