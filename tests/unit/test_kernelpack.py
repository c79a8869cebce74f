"""labkit kernel export/import on a fake kernel directory: round trip, and
every refusal in one line with nothing left behind."""

import io
import json
import os
import stat
import tarfile

import pytest

from labkit import cli, kernel
from labkit.errors import LabError
from labkit.kernel import build as kernelbuild
from labkit.kernel import cache as kernelcache
from labkit.kernel import pack as kernelpack
from labkit.progress import Progress

QUIET = Progress(quiet=True)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty user cache and shared location; no kernel source, so nothing can be built."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKIT_SHARED_KERNELS", str(tmp_path / "shared"))
    monkeypatch.setenv("LABKIT_KERNEL_SOURCE", str(tmp_path / "no-source.tar.xz"))
    monkeypatch.delenv("LABKIT_KERNEL_DIR", raising=False)
    return tmp_path


def fake_kernel(d, **ident):
    """A kernel directory as an import leaves it, built for this checkout unless ``ident`` says otherwise."""
    d.mkdir(parents=True)
    (d / "vmlinux").write_bytes(b"\x7fELF" + os.urandom(300_000))
    (d / "vmlinux.h").write_text("#ifndef __VMLINUX_H__\nstruct sk_buff { int len; };\n#endif\n")
    (d / "config").write_text("CONFIG_BPF_SKB_STORAGE=y\n")
    info = {"key": "0123456789abcdef", "source": "linux-source-6.12 6.12.test", "release": "6.12.99-labkit",
            "patches": [p.name for p in kernel.series()], "built": "2025-01-01T00:00:00+0000"}
    info |= kernelcache.identity() | ident
    (d / "build.json").write_text(json.dumps(info))
    return d


def export(env, name="k.tar.gz", **ident):
    src = fake_kernel(env / "src" / name.replace(".", "-"), **ident)
    return kernelpack.export(env / name, out=src, progress=QUIET), env / name, src


def left_behind(env):
    return sorted(str(p.relative_to(env)) for p in (env / "cache").rglob("*")) if (env / "cache").exists() else []


def refused(env, artifact, **kw):
    with pytest.raises(LabError) as exc:
        kernelpack.import_kernel(artifact, progress=QUIET, **kw)
    line = str(exc.value)
    assert "\n" not in line and " -- " in line
    assert not (env / "cache").exists(), f"a refused import left {left_behind(env)}"
    return line


def rewrite(artifact, target, manifest=lambda m: m, members=lambda name, data: data, drop=()):
    """Copy an uncompressed artifact, changing its manifest or members."""
    with tarfile.open(artifact) as tar:
        items = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(target, "w") as tar:
        for name, data in items:
            if name in drop:
                continue
            if name == kernelpack.MANIFEST:
                data = json.dumps(manifest(json.loads(data))).encode()
            else:
                data = members(name, data)
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return target


@pytest.mark.parametrize("name", ["k.tar.gz", "k.tar", "k.tar.xz", "lab-kernel.artifact"])
def test_round_trip_installs_into_the_cache_where_kernel_path_finds_it(env, name):
    manifest, artifact, src = export(env, name)
    assert manifest["series"] == kernelcache.series_id() and manifest["format"] == kernelpack.FORMAT
    assert manifest["release"] == "6.12.99-labkit" and manifest["labkit_version"]
    assert set(manifest["members"]) == {"vmlinux", "vmlinux.h", "config"}
    with tarfile.open(artifact) as tar:
        assert tar.getnames() == ["manifest.json", "vmlinux", "vmlinux.h", "config"]
    out = kernelpack.import_kernel(artifact, progress=QUIET)
    assert out == env / "cache" / "kernel" / "0123456789abcdef" / "out"
    for member in kernelpack.MEMBERS:
        assert (out / member).read_bytes() == (src / member).read_bytes()
    info = kernel.info(out)
    assert info["series"] == kernelcache.series_id() and info["release"] == "6.12.99-labkit"
    assert kernel.kernel_path() == out
    # labkit kernel build finds it and builds nothing (with no source here, a build would fail)
    assert kernelbuild.build(progress=QUIET) == out
    assert not list((env / "cache").glob(".*")), "the import left its temporary directory"
    assert stat.S_IMODE((env / "cache").stat().st_mode) == 0o700, "the user's cache it made is not theirs alone"


def test_exporting_an_imported_kernel_gives_the_same_members(env):
    manifest, artifact, _ = export(env)
    out = kernelpack.import_kernel(artifact, progress=QUIET)
    again = kernelpack.export(env / "again.tar", out=out, progress=QUIET)
    assert again["members"] == manifest["members"] and again["series"] == manifest["series"]


def test_importing_twice_replaces_the_first(env):
    _, artifact, _ = export(env)
    first = kernelpack.import_kernel(artifact, progress=QUIET)
    assert kernelpack.import_kernel(artifact, progress=QUIET) == first
    assert sorted(p.name for p in first.iterdir()) == ["build.json", "config", "vmlinux", "vmlinux.h"]
    assert [p.name for p in (env / "cache" / "kernel").iterdir()] == ["0123456789abcdef"]


def test_corrupt_member_is_refused(env):
    _, artifact, _ = export(env, "k.tar")
    bad = rewrite(artifact, env / "bad.tar", members=lambda n, d: d.replace(b"len", b"lEn") if n == "vmlinux.h" else d)
    line = refused(env, bad)
    assert "member vmlinux.h does not match its checksum (file damaged?)" in line


def test_flipped_byte_in_a_compressed_file_is_refused(env):
    _, artifact, _ = export(env, "k.tar.gz")
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (env / "bad.tar.gz").write_bytes(bytes(data))
    line = refused(env, env / "bad.tar.gz")
    assert "damaged" in line


@pytest.mark.parametrize("name", ["k.tar.gz", "k.tar", "k.tar.xz"])
def test_truncated_file_is_refused(env, name):
    _, artifact, _ = export(env, name)
    data = artifact.read_bytes()
    cut = env / ("cut-" + name)
    cut.write_bytes(data[: len(data) * 2 // 3])
    line = refused(env, cut)
    assert "truncated" in line or "damaged" in line


def test_missing_member_is_named(env):
    _, artifact, _ = export(env, "k.tar")
    short = rewrite(artifact, env / "short.tar", drop=("config",))
    assert "has no member config" in refused(env, short)


def test_other_patch_series_is_refused_naming_both(env):
    _, artifact, _ = export(env, series="abc123abc123")
    line = refused(env, artifact)
    assert f"is for patch series abc123abc123, this checkout is {kernelcache.series_id()}" in line
    assert "labkit kernel build" in line


def test_other_config_is_refused(env):
    _, artifact, _ = export(env, config_id="c0ffeec0ffee")
    assert f"is for kernel/lab.config c0ffeec0ffee, this checkout is {kernelcache.config_id()}" in refused(env, artifact)


def test_wrong_format_version_is_refused(env):
    _, artifact, _ = export(env, "k.tar")
    newer = rewrite(artifact, env / "v2.tar", manifest=lambda m: m | {"format": 2})
    assert f"is format 2, this labkit ({kernelpack.__version__}) reads format 1" in refused(env, newer)


def test_unexpected_member_is_refused_and_nothing_written_outside(env):
    _, artifact, _ = export(env, "k.tar")
    with tarfile.open(artifact, "a") as tar:
        ti = tarfile.TarInfo("../escaped")
        ti.size = 2
        tar.addfile(ti, io.BytesIO(b"hi"))
    assert "unexpected member ../escaped" in refused(env, artifact)
    assert not (env / "escaped").exists()


def test_not_an_artifact_is_refused(env):
    (env / "notes.txt").write_text("hello\n")
    assert "truncated or damaged" in refused(env, env / "notes.txt")
    assert "not found" in refused(env, env / "nope.tar.gz")


def test_cli_refusal_is_one_line(env, capsys):
    _, artifact, _ = export(env, series="abc123abc123")
    assert cli.main(["kernel", "import", str(artifact)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("labkit: ")]
    assert len(lines) == 1 and "patch series abc123abc123" in lines[0], err
    assert not (env / "cache").exists()


def test_shared_location_is_readable_by_all_and_found_after_the_own_cache(env):
    _, artifact, _ = export(env)
    old = os.umask(0o077)
    try:
        out = kernelpack.import_kernel(artifact, to=env / "shared", progress=QUIET)
    finally:
        os.umask(old)
    assert out == env / "shared" / "0123456789abcdef" / "out"
    for d in (env / "shared", out.parent, out):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    assert not (env / "cache").exists(), "importing elsewhere wrote the user's cache"
    assert kernel.kernel_path() == out
    assert kernelbuild.build(progress=QUIET) == out  # found, nothing built
    own = kernelpack.import_kernel(artifact, progress=QUIET)
    assert kernel.kernel_path() == own, "the user's own cache comes before the shared location"


def test_no_kernel_anywhere_says_build_or_import(env):
    with pytest.raises(LabError) as exc:
        kernel.kernel_path()
    assert "labkit kernel build" in str(exc.value) and "labkit kernel import" in str(exc.value)


def test_a_kernel_for_another_series_in_the_shared_location_is_not_taken(env):
    fake_kernel(env / "shared" / "fedcba9876543210" / "out", series="abc123abc123")
    with pytest.raises(LabError):
        kernel.kernel_path()


def test_export_refuses_a_kernel_of_unknown_origin(env):
    d = env / "odd"
    d.mkdir()
    (d / "vmlinux").write_bytes(b"x")
    with pytest.raises(LabError) as exc:
        kernelpack.export(env / "x.tar", out=d, progress=QUIET)
    assert "build.json" in str(exc.value)
    assert not list(env.glob("*.tar")) and not list(env.glob(".x.tar.*"))
