"""The workshop login: a username of the student's choosing and the room's code.

Why this and not NativeAuthenticator: in a live room nobody can wait for an
instructor to approve 60 sign-ups, and nobody should have to reset a
forgotten password halfway through a lesson. The instructor prints one
workshop code (``labkit hub start`` shows it), writes it on the board, and
each student picks a name; logging in again with the same name and the code
gives the same server and the same notebooks. The code is a key to the
room, not an identity: anyone who knows it can log in under any student
name. That is the trade a workshop makes; for a course with identities use
NativeAuthenticator or an OAuth authenticator instead.

The instructor (``--admin NAME``, JupyterHub's admin_users) logs in with a
separate admin code, so knowing the room's code does not make a student an
admin.

Unix accounts: every hub user is a local account ``lab-<name>`` (the prefix
is added by ``normalize_username``, so hub names and unix names are the
same and ``ps`` shows whose QEMU is whose), created on first login by
``LocalAuthenticator.create_system_users`` with our own useradd line: a
locked password (no login but through the hub), home 0700 so no other
student (nor their VM, which runs as them) can read it, and the GECOS field
``skb-lab-hub`` so the accounts can be found and removed. An existing
account with that name the hub did not create is never taken over.
"""

from __future__ import annotations

import hmac
import os
import pwd
import re
import subprocess
import time

from jupyterhub.auth import LocalAuthenticator
from traitlets import Bool, Unicode, default

PREFIX = "lab-"
MARKER = "skb-lab-hub"
# The part a student types: a letter, then letters, digits or '-'; 20 at most
# (with the prefix well inside useradd's 32).
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
PATTERN = rf"^{PREFIX}[a-z][a-z0-9-]{{0,19}}$"


def unix_name(typed: str) -> str:
    """What a typed name becomes: 'Alice ' -> 'lab-alice'; 'lab-alice' stays."""
    name = typed.strip().lower()
    return name if name.startswith(PREFIX) else PREFIX + name


def is_hub_account(name: str) -> bool:
    """True if the local account exists and was made by the hub."""
    try:
        return pwd.getpwnam(name).pw_gecos.startswith(MARKER)
    except KeyError:
        return False


def create_account(name: str):
    """useradd for one student: own group, home 0700, no password, bash for JupyterLab's terminal."""
    if not re.match(PATTERN, name):
        raise ValueError(f"refusing to create account {name!r}")
    for attempt in range(10):  # another useradd/userdel holding /etc/passwd's lock: try again
        res = subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash",
                              "--comment", MARKER, name], capture_output=True, text=True)
        if res.returncode == 0 or "lock" not in res.stderr or attempt == 9:
            break
        time.sleep(0.3)
    res.check_returncode()
    os.chmod(pwd.getpwnam(name).pw_dir, 0o700)


class WorkshopAuthenticator(LocalAuthenticator):
    """Username of one's choosing + the shared workshop code (admins: the admin code)."""

    code = Unicode("", help="The workshop code students type as their password.").tag(config=True)
    admin_code = Unicode("", help="The code admin users type instead.").tag(config=True)

    create_system_users = Bool(True, help="Create lab-<name> on first login.").tag(config=True)

    # JupyterHub 5 lets nobody in unless told who may: the code is the gate here.
    @default("allow_all")
    def _default_allow_all(self):
        return True

    def normalize_username(self, username):
        return unix_name(username)

    def validate_username(self, username):
        return bool(re.match(PATTERN, username)) and super().validate_username(username)

    async def authenticate(self, handler, data):
        name = unix_name(data.get("username", ""))
        given = (data.get("password") or "").strip()
        if not re.match(PATTERN, name):
            self.log.warning("login refused: %r is not a workshop name (a-z, 0-9, -)", name)
            return None
        want = self.admin_code if name in self.admin_users else self.code
        if not want or not hmac.compare_digest(given.encode(), want.encode()):
            self.log.warning("login refused for %s: wrong code", name)
            return None
        try:
            existing = pwd.getpwnam(name)
        except KeyError:
            existing = None
        if existing is not None and not existing.pw_gecos.startswith(MARKER):
            self.log.warning("login refused for %s: a local account the hub did not create", name)
            return None
        return name

    def add_system_user(self, user):
        self.log.info("creating unix account %s", user.name)
        try:
            create_account(user.name)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"useradd {user.name} failed: {exc.stderr.strip()}") from exc

