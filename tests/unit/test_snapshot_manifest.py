"""A snapshot's freshness is judged against the environment that made it: another checkout's
snapshot (its own venv) is not stale to this one, so this one's build does not sweep it away."""

import json

from labkit.vm import snapshot


def made_by_another_env(root, key, env, loaded):
    d = root / key
    d.mkdir(parents=True)
    (d / "state").write_bytes(b"saved")
    files = [str(loaded)]
    (d / "manifest.json").write_text(json.dumps({"format": snapshot.FORMAT, "key": key, "files": files,
                                                 "env_dirs": [str(env)],
                                                 "fingerprint": snapshot.fingerprint(files, [str(env)])}))
    return d


def test_a_snapshot_is_fresh_against_the_environment_it_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_SNAPSHOTS", str(tmp_path / "snaps"))
    env, loaded = tmp_path / "other-venv", tmp_path / "loaded.py"
    env.mkdir()
    loaded.write_text("x = 1\n")
    made_by_another_env(tmp_path / "snaps", "aaaa", env, loaded)
    found, why = snapshot.load("aaaa")
    assert found is not None, why  # this process's own site-packages are not the ones it was made with
    (env / "new-package").mkdir()  # its environment changes: now it is stale
    assert snapshot.load("aaaa")[0] is None
