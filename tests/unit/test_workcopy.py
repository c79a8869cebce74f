"""labkit open serves the learner's own copy of the lessons: made on the first
open, completed later, never overwriting their work, never inside the checkout."""

import pytest

from labkit import paths
from labkit.course import workcopy
from labkit.errors import LabError


def test_the_first_open_copies_lessons_and_solutions(tmp_path):
    root, added = workcopy.seed(tmp_path / "mine")
    assert root == (tmp_path / "mine").resolve()
    names = {str(p) for p in added}
    assert "01_first_storage.ipynb" in names and "solutions/01_first_storage.ipynb" in names
    assert not any(n.startswith(("data/", ".ipynb_checkpoints")) for n in names)  # recordings stay in the checkout
    assert (root / "00_index.ipynb").read_bytes() == (paths.PROJECT / "notebooks" / "00_index.ipynb").read_bytes()
    assert not list(tmp_path.glob(".skb-lab-seed.*"))


def test_later_opens_keep_the_learners_work_and_add_what_is_missing(tmp_path):
    root, _ = workcopy.seed(tmp_path / "mine")
    (root / "01_first_storage.ipynb").write_text("my work")
    (root / "03_clones.ipynb").unlink()
    root2, added = workcopy.seed(tmp_path / "mine")
    assert root2 == root and [str(p) for p in added] == ["03_clones.ipynb"]
    assert (root / "01_first_storage.ipynb").read_text() == "my work"
    assert workcopy.seed(tmp_path / "mine")[1] == []


def test_the_default_is_under_home_or_labkit_workdir(tmp_path, monkeypatch):
    monkeypatch.delenv("LABKIT_WORKDIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert workcopy.workdir() == (tmp_path / "skb-lab-notebooks").resolve()
    monkeypatch.setenv("LABKIT_WORKDIR", str(tmp_path / "elsewhere"))
    assert workcopy.seed()[0] == (tmp_path / "elsewhere").resolve()


@pytest.mark.parametrize("where", ["notebooks", "notebooks/mine", ".", ".."])
def test_never_inside_the_checkout(where):
    with pytest.raises(LabError, match="overlap the checkout"):
        workcopy.seed(paths.PROJECT / where)


def test_a_file_in_the_way_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(LabError, match="not a folder"):
        workcopy.seed(tmp_path / "f")
