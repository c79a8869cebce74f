"""The lab's JupyterLab settings (labkit/jupyter_config): line numbers in code
cells, the extension that highlights %%bpf cells as C, and every way of
serving the lessons (./lab open, the hub, Binder) reading them."""

import json
import os
import subprocess

from labkit import paths

CONFIG = paths.PROJECT / "labkit" / "jupyter_config"


def test_code_cells_show_line_numbers():
    overrides = json.loads((CONFIG / "labconfig" / "default_setting_overrides.json").read_text())
    assert overrides["@jupyterlab/notebook-extension:tracker"]["codeCellConfig"]["lineNumbers"] is True


def test_the_bpf_cell_extension_is_found_next_to_the_config():
    from traitlets.config import Config

    c, path = Config(), CONFIG / "jupyter_lab_config.py"
    exec(compile(path.read_text(), str(path), "exec"), {"get_config": lambda: c, "__file__": str(path)})
    ext_dir = CONFIG / "labextensions"
    assert c.LabApp.extra_labextensions_path == [str(ext_dir)]
    pkg = json.loads((ext_dir / "labkit-bpf-cell" / "package.json").read_text())
    entry = ext_dir / pkg["name"] / pkg["jupyterlab"]["_build"]["load"]
    js = entry.read_text()
    assert f'var NAME = "{pkg["name"]}";' in js and "%%bpf" in js
    assert pkg["jupyterlab"]["_build"]["extension"] == "./extension"


def test_the_config_path_points_at_it_everywhere():
    out = subprocess.run(["bash", str(paths.PROJECT / "binder" / "start"), "printenv", "JUPYTER_CONFIG_PATH"],
                         capture_output=True, text=True, env={**os.environ, "JUPYTER_CONFIG_PATH": ""}, check=True)
    assert out.stdout.strip() == str(CONFIG)
    assert 'os.path.join(self.prefix, "src", "labkit", "jupyter_config")' in \
        (paths.PROJECT / "labkit" / "hub" / "spawner.py").read_text()
    assert '"jupyter_config"' in (paths.PROJECT / "labkit" / "course" / "jupyter.py").read_text()
