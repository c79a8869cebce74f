"""Last in the host tier: another user's lab VM, started before the first
test (tests/host/conftest.py's bystander), ran through every test of the
tier, VM boots, kills, cleanups and all, and is still the same VM."""

import os

from tests.conftest import need


def test_another_users_vm_ran_beside_the_whole_tier(bystander):
    need(bystander is not None, "the bystander VM runs as another unix user, as root and on request",
         "run as root with LABKIT_BYSTANDER=1 (CI=true does)")
    os.kill(bystander["pid"], 0)
    cmd = open(f"/proc/{bystander['pid']}/cmdline", "rb").read()
    assert b"qemu-system" in cmd
    assert os.stat(f"/proc/{bystander['pid']}").st_uid == bystander["uid"]
