"""``labkit hub``: JupyterHub for a workshop on one machine.

setup.py   a read-only install students can use (source, venv, proxy, kernel)
config.py  the jupyterhub_config.py that ``labkit hub start`` writes
run.py     ``labkit hub start|stop|status``: JupyterHub in the foreground, and a stop that leaves nothing
auth.py    the workshop-code authenticator
spawner.py each student's server as their own unix user, in their own cgroup
cgroups.py the per-student cgroup (v2, or v1 on a hybrid machine)
cli.py     the ``labkit hub`` subcommands
drive.py   run a notebook through a student's own server (tests, benchmarks)
instructor.py  the instructor view, a hub service
"""
