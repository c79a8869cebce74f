"""A student's progress file as the instructor view reads it: a file the student controls completely.

``labkit.course.checking.record`` appends one JSON object a line to the student's own
``~/.cache/labkit/progress.jsonl``; the instructor view reads every student's file, as root,
into one page. So nothing in one file may take that page down or make it grow:

- the file is read only if it is the student's own regular file (not through a symlink), and
  only its last ``MAX_READ`` bytes and, of those, its last ``MAX_LINES`` lines;
- each line is parsed on its own; a line longer than ``MAX_LINE`` is not parsed at all (which
  also keeps ``json.loads`` from recursing deep into ``[[[[...``), and a line that fails in any
  way is skipped and counted;
- a record is kept only if its ``exercise`` is one of the course's (``course_exercises()``), its
  ``passed`` is exactly True, False or None (a replay's "not checked"; not 1, not "true"), and its
  text fields (``TEXT``) are strings or missing; they are cut to ``TEXT``'s lengths, and what
  a page cannot show (control characters, lone surrogates) is replaced. Nothing else of the line is kept.
"""

from __future__ import annotations

import functools
import json
import os
import stat

MAX_READ = 4 << 20  # the last 4 MiB of a progress file are plenty
MAX_LINES = 5000  # and of those, the last 5000 lines (a workshop's checks are a few hundred)
MAX_LINE = 4096  # bytes: a record is about 250
TEXT = {"summary": 300, "when": 40, "mode": 20, "lesson": 80}  # the text fields kept, and how long
_UNPRINTABLE = dict.fromkeys([*range(32), 127], "?")


@functools.cache
def course_exercises() -> frozenset[str]:
    """The ids of the course's exercises (what a record may name, and the view's columns)."""
    from labkit.course import exercises

    return frozenset(exercises.all_checks())


def tail(path, uid: int | None = None) -> list[bytes]:
    """The last lines of a progress file (at most MAX_LINES of its last MAX_READ bytes); [] if it is
    missing, a symlink, not a regular file or (with uid) not owned by uid."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid):
            return []
        if st.st_size > MAX_READ:
            fh.seek(st.st_size - MAX_READ)
            fh.readline(MAX_READ)  # a partial line
        data = fh.read(MAX_READ)
    return data.rsplit(b"\n", MAX_LINES)[-MAX_LINES:]  # the first piece holds every earlier line


def parse(line: bytes, known=None) -> dict:
    """The record a line holds ({"exercise", "passed", *TEXT}); ValueError if it is not one to keep."""
    if len(line) > MAX_LINE:
        raise ValueError("a line longer than any record")
    rec = json.loads(line)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    ex = rec.get("exercise")
    if not isinstance(ex, str) or ex not in (course_exercises() if known is None else known):
        raise ValueError("not an exercise of the course")
    if "passed" not in rec or not (rec["passed"] is None or isinstance(rec["passed"], bool)):
        raise ValueError("not a verdict")
    out = {"exercise": ex, "passed": rec["passed"]}
    for key, size in TEXT.items():
        value = rec.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} is not text")
        out[key] = None if value is None else _text(value, size)
    return out


def _text(value: str, size: int) -> str:
    return value[:size].encode("utf-8", "replace").decode("utf-8").translate(_UNPRINTABLE)


def load(path, uid: int | None = None, known=None) -> tuple[list[dict], int]:
    """(records, skipped): the records of a progress file (as ``tail`` reads it) that are worth
    keeping, and how many of its non-blank lines were not."""
    known = course_exercises() if known is None else known
    records, skipped = [], 0
    for line in tail(path, uid):
        if not line.strip():
            continue
        try:
            records.append(parse(line, known))
        except Exception:  # noqa: BLE001 - whatever a line does (RecursionError, ...), it is one skipped line
            skipped += 1
    return records, skipped


def latest(records: list[dict]) -> dict:
    """Per exercise: {"passed", "summary", "when", "mode", "lesson", "tries"} of the last verdict that
    judged something (live), else of the last one (a replay's "not checked")."""
    out = {}
    for rec in records:
        ex = rec["exercise"]
        prev = out.get(ex)
        tries = (prev["tries"] if prev else 0) + 1
        if prev is None or rec.get("passed") is not None or prev["passed"] is None:
            out[ex] = {k: rec.get(k) for k in ("passed", "summary", "when", "mode", "lesson")}
        out[ex]["tries"] = tries
    return out
