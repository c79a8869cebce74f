"""``labkit hub end``: the workshop is over; each student's work archived, then everything of theirs removed.

For every account this hub made (in its database, and made by the hub:
GECOS ``skb-lab-hub``) and every instructor of it: the home (its image,
mounted read-only for the copy, or the home directory for an account made
before homes had images) goes into ``<archive>/<user>.tar.gz`` (root, 0600;
tar keeps symlinks as links), then the account and its home are removed
(``userdel -r``), then its image. Last the hub's own memory of the room:
its database, the password file, the cookie secret and the instructors'
password files, so the next workshop starts with every name free.
Refused while the hub runs. Accounts the hub did not make are never touched.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from labkit.errors import LabError
from labkit.hub import disk
from labkit.hub.auth import is_hub_account
from labkit.hub.run import hub_users, running_pid, sweep

FORGET = ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "hub.json")


def _archive_one(user: str, state: Path, dest: Path) -> str:
    import pwd

    out = dest / f"{user}.tar.gz"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    img = disk.image(state, user)
    if img.exists():
        with disk.mounted(img, "ro,nosuid,nodev,noexec") as mnt:
            res = subprocess.run(["tar", "-czf", str(out), "-C", mnt, "."], capture_output=True, text=True)
    else:
        res = subprocess.run(["tar", "-czf", str(out), "-C", pwd.getpwnam(user).pw_dir, "."],
                             capture_output=True, text=True)
    if res.returncode not in (0, 1):  # 1: a file changed while read
        raise LabError(f"archiving {user}'s home failed: {res.stderr.strip()[-300:]}",
                       fix="nothing was removed; fix it and run labkit hub end again")
    return str(out)


def end(prefix, state=None, archive: str | None = "") -> list[str]:
    """Archive (unless archive is None) and remove every account of this hub; what was done."""
    if os.geteuid() != 0:
        raise LabError("removing the workshop's accounts needs root", fix="run it with sudo")
    st = Path(state or os.path.join(prefix, "state")).absolute()
    if running_pid(st):
        raise LabError(f"the hub of {st} is running", fix=f"stop it first: labkit hub stop --state {st}")
    lines = sweep(Path(prefix).absolute(), st, say=lambda text: None)
    instructors = sorted(p.name[len("instructor-"):-len(".txt")] for p in st.glob("instructor-*.txt"))
    users = sorted(u for u in set(hub_users(st)) | set(instructors) if is_hub_account(u))
    if archive is not None:
        dest = Path(archive or st / f"archive-{time.strftime('%Y%m%d-%H%M%S')}").absolute()
        dest.mkdir(parents=True, exist_ok=True)
        os.chown(dest, 0, 0)
        os.chmod(dest, 0o700)
        for user in users:
            lines.append(f"archived {user}: {_archive_one(user, st, dest)}")
    for user in users:
        res = subprocess.run(["userdel", "-r", "-f", user], capture_output=True, text=True)
        if is_hub_account(user):
            raise LabError(f"userdel {user} failed: {res.stderr.strip()}", fix="see the message, then run it again")
        lines.append(f"removed the account {user} and its home")
    lines += [f"removed the home image {p}" for p in disk.remove_images(st, users)]
    for p in [*(st / n for n in FORGET), *st.glob("passwords.dbm*"), *(st / f"instructor-{u}.txt" for u in instructors)]:
        if p.exists():
            p.unlink()
            lines.append(f"removed {p}")
    return lines or ["nothing to remove"]
