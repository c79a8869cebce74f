"""The pure parts of the kernel build: fragments, cache keys, patch lists."""

from pathlib import Path

from labkit import kernel, paths


def test_fragment_options_reads_set_and_unset():
    text = "# comment\nCONFIG_A=y\nCONFIG_B=\"bpf\"\n# CONFIG_C is not set\n\nCONFIG_D=8\n"
    assert kernel.fragment_options(text) == {"CONFIG_A": "y", "CONFIG_B": '"bpf"', "CONFIG_C": "n",
                                             "CONFIG_D": "8"}


def test_missing_options_reports_what_did_not_survive():
    frag = {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_C": "n"}
    config = {"CONFIG_A": "y", "CONFIG_B": "m"}
    assert kernel.missing_options(frag, config) == ["CONFIG_B=y (got m)"]


def test_lab_config_asks_for_the_storage_and_pvh():
    opts = kernel.fragment_options((paths.KERNEL_SRC_DIR / "lab.config").read_text())
    for key in ("CONFIG_BPF_SKB_STORAGE", "CONFIG_PVH", "CONFIG_DEBUG_INFO_BTF", "CONFIG_IKHEADERS",
                "CONFIG_NET_IPGRE", "CONFIG_NET_IPIP", "CONFIG_VXLAN", "CONFIG_GENEVE", "CONFIG_VETH",
                "CONFIG_NET_ACT_MIRRED", "CONFIG_NET_CLS_BPF", "CONFIG_NET_9P_VIRTIO"):
        assert opts.get(key) == "y", key


def test_lab_config_explains_non_obvious_options():
    text = (paths.KERNEL_SRC_DIR / "lab.config").read_text()
    for key in ("CONFIG_PVH", "CONFIG_IKHEADERS", "CONFIG_DEBUG_INFO", "CONFIG_BPF_SKB_STORAGE", "CONFIG_NET_SCH_PLUG"):
        before = text.split(key + "=")[0].rstrip().splitlines()[-1]
        assert before.startswith("#"), f"{key} has no comment saying why"


def test_cache_key_changes_with_patches_and_config(tmp_path):
    p1 = tmp_path / "0001-a.patch"
    p1.write_text("one")
    k1 = kernel.cache_key("v1", [p1], b"CONFIG_A=y")
    assert k1 == kernel.cache_key("v1", [p1], b"CONFIG_A=y")
    assert k1 != kernel.cache_key("v2", [p1], b"CONFIG_A=y")
    assert k1 != kernel.cache_key("v1", [p1], b"CONFIG_A=n")
    p1.write_text("two")
    assert k1 != kernel.cache_key("v1", [p1], b"CONFIG_A=y")


def test_series_lists_real_patches_in_order():
    patches = kernel.series()
    assert [p.name[:4] for p in patches] == sorted(p.name[:4] for p in patches)
    for p in patches:
        text = p.read_text()
        assert text.startswith("From "), f"{p.name} is not a git format-patch file"
        assert "Subject: [PATCH" in text


def test_patched_files_reads_git_headers():
    patch = b"--- a/net/core/skbuff.c\n+++ b/net/core/skbuff.c\n--- /dev/null\n+++ b/include/net/new.h\n"
    assert kernel.patched_files(patch) == {"net/core/skbuff.c", "include/net/new.h"}


def test_kernel_path_override(tmp_path, monkeypatch):
    (tmp_path / "vmlinux").write_bytes(b"")
    monkeypatch.setenv("LABKIT_KERNEL_DIR", str(tmp_path))
    assert kernel.kernel_path() == Path(tmp_path)


def test_failing_step_names_itself_and_shows_the_log_tail(tmp_path):
    import pytest

    from labkit.errors import KernelBuildFailed
    from labkit.progress import Progress

    b = kernel.Builder(progress=Progress(quiet=True))
    with pytest.raises(KernelBuildFailed) as exc:
        with b.step("configure", "composing the config"):
            b.run(["sh", "-c", "echo making; echo 'Makefile:12: the real error' >&2; exit 3"],
                  cwd=tmp_path, log=tmp_path / "configure.log")
    err = exc.value
    assert "failed at step 'configure'" in str(err) and "status 3" in str(err)
    assert str(tmp_path / "configure.log") in str(err)
    assert "Makefile:12: the real error" in err.details


def test_a_patch_that_does_not_apply_names_the_source_and_the_patch_and_leaves_the_tree(tmp_path):
    """A newer Debian point release the series no longer applies to: one line naming the source
    version and the patch, and the tree as the patches before it left it."""
    import pytest

    from labkit.errors import KernelBuildFailed
    from labkit.kernel.build import Builder

    src, applied = tmp_path / "src", tmp_path / "applied"
    src.mkdir()
    applied.mkdir()
    (src / "a.c").write_text("one\ntwo\nthree\n")
    (src / "b.c").write_text("moved on\n")
    good, bad = tmp_path / "0001-good.patch", tmp_path / "0002-bad.patch"
    good.write_text("From 0 Mon Sep 17 00:00:00 2001\n---\n--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n")
    bad.write_text("From 0 Mon Sep 17 00:00:00 2001\n---\n--- a/a.c\n+++ b/a.c\n@@ -1,1 +1,1 @@\n-one\n+1\n"
                   "--- a/b.c\n+++ b/b.c\n@@ -1,1 +1,1 @@\n-as it was\n+changed\n")
    b = Builder()
    b.log_path = tmp_path / "patch.log"
    with pytest.raises(KernelBuildFailed) as exc:
        b.apply_series(applied, applied / "order", [], src, [good, bad], "linux-source-6.12 6.12.999-1")
    first = exc.value.render().splitlines()[0]
    assert "0002-bad.patch" in first and "6.12.999-1" in first, first
    assert (src / "a.c").read_text() == "one\n2\nthree\n", "the patch that failed changed the tree"
    assert not list(src.glob("*.rej")) and not list(src.glob("*.orig"))
    assert (applied / "order").read_text().split() == ["0001-good.patch"]
