"""``labkit hub``: JupyterHub for a workshop on one machine.

setup.py    a read-only install students can use (source, venv, proxy, kernel)
config.py   the jupyterhub_config.py that ``labkit hub start`` writes; the machine's capacity
run.py      ``labkit hub start|stop|status``: JupyterHub in the foreground, and a stop that leaves nothing
auth.py     one identity per student (FirstUseAuthenticator), the room's code for a new name
spawner.py  each student's server as their own unix user, in their own cgroup
cgroups.py  the per-student cgroup and the limits on all students (v2, or v1 on a hybrid machine)
disk.py     each student's home image and private /tmp
accounts.py ``labkit hub end``: archive and remove the workshop's accounts
cli.py      the ``labkit hub`` subcommands
drive.py    run a notebook through a student's own server (tests, benchmarks)
instructor.py   the instructor view, a hub service
progressfile.py a student's progress file, read as the instructor view must (hostile input)
"""
