"""The learner's own copy of the lessons, which ``labkit open`` serves.

JupyterLab autosaves, so serving the checkout's ``notebooks/`` would write a
learner's work (and ``.ipynb_checkpoints/``) into the tracked lessons. As the
workshop hub does with ``~/lab``, ``labkit open`` serves a copy under the
user's home: ``$LABKIT_WORKDIR``, else ``~/skb-lab-notebooks``. It is made on
the first open (into a temporary folder moved into place, so a failed copy
leaves nothing half made); later opens add lessons and solutions the checkout
has gained and never overwrite a file that is there. The recordings stay in
the checkout (``notebooks/data/``, read from there by ``labkit.course.lesson``), and
``labkit.course.coach.reset`` takes its starters from the checkout's lessons.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from labkit import paths
from labkit.errors import LabError

DEFAULT = "~/skb-lab-notebooks"
SKIP = {"data", ".ipynb_checkpoints", "__pycache__"}


def source() -> Path:
    return paths.PROJECT / "notebooks"


def workdir() -> Path:
    """Where this user's lessons live: ``$LABKIT_WORKDIR``, else ``~/skb-lab-notebooks``."""
    return Path(os.path.expanduser(os.environ.get("LABKIT_WORKDIR") or DEFAULT)).resolve()


def lesson_files(src=None) -> list:
    """The notebooks to copy, relative to src: lessons and solutions (not the recordings)."""
    src = Path(src or source())
    return sorted(p.relative_to(src) for p in src.rglob("*.ipynb")
                  if not SKIP.intersection(p.relative_to(src).parts[:-1]))


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def seed(dest=None, src=None) -> tuple[Path, list]:
    """Make or complete the learner's copy; (its folder, the files added this time)."""
    src = Path(src or source()).resolve()
    dest = Path(dest).expanduser().resolve() if dest else workdir()
    if _inside(dest, paths.PROJECT.resolve()) or _inside(paths.PROJECT.resolve(), dest):
        raise LabError(f"the lessons' working copy {dest} would overlap the checkout {paths.PROJECT}",
                       fix="pass --workdir DIR (or set LABKIT_WORKDIR) to a folder outside the checkout")
    files = lesson_files(src)
    if not files:
        raise LabError(f"no lessons in {src}", fix="is this the lab's checkout? (git status)")
    try:
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".skb-lab-seed.", dir=dest.parent))
            try:
                for rel in files:
                    _copy(src / rel, tmp / rel)
                os.rename(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return dest, files
        if not dest.is_dir():
            raise LabError(f"{dest} is not a folder", fix="pass --workdir DIR (or set LABKIT_WORKDIR)")
        added = [rel for rel in files if not os.path.lexists(dest / rel)]
        for rel in added:
            _copy(src / rel, dest / rel)
        return dest, added
    except OSError as exc:
        raise LabError(f"could not copy the lessons into {dest}: {exc.strerror or exc}",
                       fix="pass --workdir DIR (or set LABKIT_WORKDIR) to a folder you can write") from None


def _copy(a: Path, b: Path):
    b.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(a, b)
    os.chmod(b, 0o644 & ~_umask())


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old
