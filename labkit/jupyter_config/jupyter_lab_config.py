# The lab's own JupyterLab extension (labextensions/labkit-bpf-cell: %%bpf cells
# highlighted as C) sits next to this file; JupyterLab finds it wherever this
# directory is on JUPYTER_CONFIG_PATH (./lab open, the hub, Binder).
import os

c = get_config()  # noqa: F821 (traitlets defines it when it reads this file)
c.LabApp.extra_labextensions_path = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "labextensions")]

# On a workshop hub (LABKIT_SPARE: the student's lessons folder), restore a lab
# VM as the server starts, for their first lesson cell to take over
# (labkit.vm.spare); it runs on its own, in the server's cgroup.
if os.environ.get("LABKIT_SPARE") and not os.environ.get("LABKIT_SPARE_STARTED"):
    import subprocess
    import sys

    os.environ["LABKIT_SPARE_STARTED"] = "1"
    _log = os.path.join(os.path.expanduser("~"), ".cache", "labkit")
    os.makedirs(_log, exist_ok=True)
    with open(os.path.join(_log, "spare.log"), "ab") as _out:  # what went wrong, if it did
        subprocess.Popen([sys.executable, "-m", "labkit.vm.spare", os.environ["LABKIT_SPARE"]],
                         stdin=subprocess.DEVNULL, stdout=_out, stderr=_out, start_new_session=True)
