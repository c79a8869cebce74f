"""The ``labkit hub`` subcommands (registered by labkit.cli).

    labkit hub setup [--prefix DIR] [--kernel FILE]   install for every user (root)
    labkit hub start [--ip IP] [--port N] [--code CODE] [--instructor NAME] [--max-vms N]
                     [--memory 2G] [--cpus 1.0] [--disk 2G] [--max-servers N] [--max-students N]
                     [--idle-timeout 3600] [--ssl-cert F --ssl-key F | --insecure]   run the hub (foreground)
    labkit hub up [setup and start options]           setup, then start (what ./lab hub runs)
    labkit hub status | stop
    labkit hub end [--archive DIR | --no-archive]     the workshop is over: archive and remove the accounts
"""

from __future__ import annotations

import os

DEFAULT_PREFIX = "/opt/skb-lab"


def add_commands(sub):
    h = sub.add_parser("hub", help="JupyterHub for a workshop on this machine").add_subparsers()

    def prefix(p):
        p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"the install (default {DEFAULT_PREFIX})")

    def state(p):
        p.add_argument("--state", help="the hub's state directory, 0700 (default PREFIX/state)")

    def setup_opts(p):
        p.add_argument("--kernel", metavar="FILE",
                       help="a lab kernel from `labkit kernel export` (default: export your own built one)")

    def start_opts(p):
        p.add_argument("--ip", default="127.0.0.1", help="address to serve on (0.0.0.0 for the room)")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument("--code", help="the workshop code students type (default: a random one)")
        p.add_argument("--instructor", "--admin", dest="instructor", action="append", default=[], metavar="NAME",
                       help="an instructor account (lab-NAME): its password is written to "
                            "STATE/instructor-lab-NAME.txt (0600)")
        p.add_argument("--max-vms", type=int, help="lab VMs running at once on this machine "
                                                   "(default: from the cores and memory)")
        p.add_argument("--memory", default="2G", help="memory per student: server, kernels and VM (default 2G)")
        p.add_argument("--cpus", type=float, default=1.0, help="CPUs per student (default 1.0)")
        p.add_argument("--idle-timeout", type=int, default=3600, help="s before an idle server is stopped")
        p.add_argument("--disk", default="2G", help="each student's home, a filesystem image (default 2G)")
        p.add_argument("--max-servers", type=int, help="servers running at once (default: from the memory and cores)")
        p.add_argument("--max-students", type=int, help="accounts the hub may make (default: from the free disk)")
        p.add_argument("--ssl-cert", default="", help="serve HTTPS with this certificate")
        p.add_argument("--ssl-key", default="", help="... and this key")
        p.add_argument("--insecure", action="store_true",
                       help="serve a non-loopback --ip without TLS (passwords cross the network in clear)")
        p.add_argument("--subdomain-host", default="",
                       help="each student's server on its own subdomain of this host (needs wildcard DNS and TLS)")

    s = h.add_parser("setup", help="install the lab, JupyterHub, the proxy and the kernel under --prefix")
    prefix(s)
    setup_opts(s)
    s.set_defaults(func=cmd_setup)

    st = h.add_parser("start", help="run the hub in the foreground; Ctrl-C stops it and every server")
    prefix(st)
    state(st)
    start_opts(st)
    st.set_defaults(func=cmd_start)

    up = h.add_parser("up", help="setup, then start")
    prefix(up)
    state(up)
    setup_opts(up)
    start_opts(up)
    up.set_defaults(func=cmd_up)

    e = h.add_parser("end", help="the workshop is over: archive each student's home, remove the accounts, "
                                 "their homes, passwords and the hub's database")
    prefix(e)
    state(e)
    e.add_argument("--archive", metavar="DIR", help="where the archives go (default STATE/archive-DATE)")
    e.add_argument("--no-archive", action="store_true", help="remove without archiving")
    e.set_defaults(func=cmd_end)

    for name, func, text in (("status", cmd_status, "is the hub running; each student's cgroup"),
                             ("stop", cmd_stop, "stop a hub started by labkit hub start")):
        p = h.add_parser(name, help=text)
        prefix(p)
        state(p)
        p.set_defaults(func=func)


def cmd_setup(args):
    from labkit.hub.setup import setup

    setup(args.prefix, args.kernel)


def _start_argv(args) -> list:
    argv = ["hub", "start", "--prefix", args.prefix, "--ip", args.ip, "--port", str(args.port),
            "--memory", args.memory, "--cpus", str(args.cpus), "--idle-timeout", str(args.idle_timeout),
            "--disk", args.disk]
    for flag, value in (("--state", args.state), ("--code", args.code), ("--ssl-cert", args.ssl_cert),
                        ("--ssl-key", args.ssl_key), ("--max-vms", args.max_vms), ("--max-servers", args.max_servers),
                        ("--max-students", args.max_students), ("--subdomain-host", args.subdomain_host)):
        if value:
            argv += [flag, str(value)]
    if args.insecure:
        argv.append("--insecure")
    for name in args.instructor:
        argv += ["--instructor", name]
    return argv


def cmd_up(args):
    from labkit.hub.setup import setup

    setup(args.prefix, args.kernel)
    # The hub runs the installed copy (prefix/src through prefix/venv), not this checkout.
    exe = os.path.join(os.path.abspath(args.prefix), "venv", "bin", "labkit")
    os.execv(exe, [exe, *_start_argv(args)])


def cmd_start(args):
    from labkit.hub.run import start

    return start(args.prefix, state=args.state, ip=args.ip, port=args.port, code=args.code,
                 instructors=args.instructor, max_vms=args.max_vms, memory=args.memory, cpus=args.cpus,
                 idle_timeout=args.idle_timeout, ssl_key=args.ssl_key, ssl_cert=args.ssl_cert, insecure=args.insecure,
                 disk_size=args.disk, max_servers=args.max_servers, max_students=args.max_students,
                 subdomain_host=args.subdomain_host)


def cmd_status(args):
    from labkit.hub.run import status

    print(status(args.prefix, args.state))


def cmd_stop(args):
    from labkit.hub.run import stop

    print("hub stopped" if stop(args.prefix, args.state) else "no hub was running")


def cmd_end(args):
    from labkit.hub.accounts import end

    for line in end(args.prefix, args.state, archive=None if args.no_archive else (args.archive or "")):
        print(line)
