"""The workshop login: one identity per student, the room's code to make a new one.

Why FirstUseAuthenticator (jupyterhub-firstuseauthenticator, The Littlest
JupyterHub's default) and not NativeAuthenticator: it was written for a
workshop in one room. A student picks a name and a password; the first
password typed for a name becomes that name's (bcrypt, in the hub's state
directory), and from then on only that password opens it, now or at next
week's workshop. Nobody waits for an instructor to approve sign-ups, which
NativeAuthenticator's approval needs, and its open sign-up would let anyone
who reaches the port make accounts. Students change their password at
``/hub/auth/change-password``.

What this subclass adds to it:

- **The room's code makes a name.** A name with no password yet is taken
  only with the workshop code in the login form's second field
  (JupyterHub's own ``request_otp`` field, prompted "Workshop code"). The
  code is a key to the room, not to anyone's account: it cannot open a
  name that has a password.
- **Nobody is made admin by logging in.** Every login returns
  ``admin: False``, so an account that was admin once (an earlier
  ``--admin``, a tick in /hub/admin) is demoted at its next login; the hub
  has no ``admin_users``. Instructors (``instructors``) get a role with only
  what they need (``config.INSTRUCTOR_SCOPES``) and a password that
  ``labkit hub start`` sets and writes to a 0600 file; their names cannot
  be claimed through the room code.
- **A cap on accounts** (``max_students``): a new name past it is refused,
  so a script holding the code cannot fill /etc/passwd and the disk.

Unix accounts: every hub user is a local account ``lab-<name>`` (the prefix
is added by ``normalize_username``, so hub names and unix names are the
same and ``ps`` shows whose QEMU is whose), made when the hub first sees the
name (``add_user``): a locked password, **expired** (``--expiredate 1``:
PAM refuses it to sshd, cron, at and su, while the spawner, which does not
go through PAM, still starts servers), home 0700, and the GECOS field
``skb-lab-hub`` so the accounts can be found and removed. An existing
account with that name the hub did not make is never taken over.
"""

from __future__ import annotations

import dbm
import hmac
import os
import pwd
import re
import subprocess
import time

import bcrypt
from firstuseauthenticator import FirstUseAuthenticator
from traitlets import Bool, Integer, Set, Unicode, default

PREFIX = "lab-"
MARKER = "skb-lab-hub"
# The part a student types: a letter, then letters, digits or '-'; 20 at most
# (with the prefix well inside useradd's 32).
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
PATTERN = rf"^{PREFIX}[a-z][a-z0-9-]{{0,19}}$"
MIN_PASSWORD = 8
EXPIRED = "1"  # days since 1970: expired for PAM, whatever the date


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


def hub_accounts() -> list[str]:
    """Every local account the hub made."""
    return sorted(p.pw_name for p in pwd.getpwall() if p.pw_gecos.startswith(MARKER))


def _account_cmd(argv):
    """useradd/usermod, again while another holds /etc/passwd's lock."""
    for attempt in range(10):
        res = subprocess.run(argv, capture_output=True, text=True)
        if res.returncode == 0 or "lock" not in res.stderr or attempt == 9:
            break
        time.sleep(0.3)
    res.check_returncode()


def create_account(name: str):
    """useradd for one student: own group, home 0700, no password, expired for PAM, bash for the terminal."""
    if not re.match(PATTERN, name):
        raise ValueError(f"refusing to create account {name!r}")
    _account_cmd(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash", "--expiredate", EXPIRED,
                  "--comment", MARKER, name])
    os.chmod(pwd.getpwnam(name).pw_dir, 0o700)


def expire_account(name: str):
    """An account made before accounts were expired: expire it now (sshd, cron, at and su refuse it)."""
    if is_hub_account(name):
        _account_cmd(["usermod", "--expiredate", EXPIRED, name])


def set_password(dbm_path: str, name: str, password: str):
    """Store a password for a name the way FirstUseAuthenticator checks it (the instructors')."""
    with dbm.open(dbm_path, "c", 0o600) as db:
        db[name.encode()] = bcrypt.hashpw(password.encode(), bcrypt.gensalt())


def has_password(dbm_path: str, name: str) -> bool:
    try:
        with dbm.open(dbm_path, "r") as db:
            return name.encode() in db
    except dbm.error:
        return False


class WorkshopAuthenticator(FirstUseAuthenticator):
    """A password per name, set at first login; a new name needs the workshop code."""

    code = Unicode("", help="The workshop code a new name needs.").tag(config=True)
    instructors = Set(help="Unix names whose password labkit hub start sets; never claimable.").tag(config=True)
    max_students = Integer(0, help="Accounts the hub may make (0: no cap).").tag(config=True)
    create_system_users = Bool(True, help="Make lab-<name> when the hub first sees it.").tag(config=True)

    @default("min_password_length")
    def _default_min_password_length(self):
        return MIN_PASSWORD

    @default("request_otp")
    def _default_request_otp(self):
        return True

    @default("otp_prompt")
    def _default_otp_prompt(self):
        return "Workshop code (new names only):"

    def normalize_username(self, username):
        return unix_name(username)

    def validate_username(self, username):
        return bool(re.match(PATTERN, username)) and super().validate_username(username)

    def _refuse(self, handler, name, why, tell):
        self.log.warning("login refused for %s: %s", name, why)
        if handler is not None:
            handler.custom_login_error = tell
        return None

    async def authenticate(self, handler, data):
        name = unix_name(data.get("username", ""))
        password = data.get("password") or ""
        if not re.match(PATTERN, name):
            return self._refuse(handler, name, "not a workshop name",
                                "A name is letters, digits and '-', starting with a letter (20 at most).")
        try:
            existing = pwd.getpwnam(name)
        except KeyError:
            existing = None
        if existing is not None and not existing.pw_gecos.startswith(MARKER):
            return self._refuse(handler, name, "a local account the hub did not create", "That name is not free.")
        if not has_password(self.dbm_path, name):
            if name in self.instructors:
                return self._refuse(handler, name, "an instructor's name, without its password set",
                                    "That name is not free.")
            given = (data.get("otp") or "").strip()
            if not self.code or not hmac.compare_digest(given.encode(), self.code.encode()):
                return self._refuse(handler, name, "a new name without the workshop code",
                                    "A new name needs the workshop code (on the board) in the second field.")
            if self.max_students and existing is None and len(hub_accounts()) >= self.max_students:
                return self._refuse(handler, name, f"{self.max_students} accounts already",
                                    "The workshop is full: ask the instructor.")
        got = await super().authenticate(handler, {"username": name, "password": password})
        if got is None:
            if not getattr(handler, "custom_login_error", ""):
                self._refuse(handler, name, "wrong password",
                             "Wrong password for that name (a name, once taken, keeps its first password).")
            return None
        return {"name": name, "admin": False}

    def add_user(self, user):
        if self.create_system_users:
            try:
                pwd.getpwnam(user.name)
            except KeyError:
                self.log.info("creating unix account %s", user.name)
                try:
                    create_account(user.name)
                except subprocess.CalledProcessError as exc:
                    raise RuntimeError(f"useradd {user.name} failed: {exc.stderr.strip()}") from exc
        return super().add_user(user)
