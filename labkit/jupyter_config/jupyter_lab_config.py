# The lab's own JupyterLab extension (labextensions/labkit-bpf-cell: %%bpf cells
# highlighted as C) sits next to this file; JupyterLab finds it wherever this
# directory is on JUPYTER_CONFIG_PATH (./lab open, the hub, Binder).
import os

c = get_config()  # noqa: F821 (traitlets defines it when it reads this file)
c.LabApp.extra_labextensions_path = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "labextensions")]
