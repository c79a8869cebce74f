"""``labkit``: the command line of the skb storage lab.

    labkit doctor                 what this machine can do, and what to fix
    labkit kernel build [--debug] build (or find in the cache) the lab kernel (--debug: KASAN, lockdep)
    labkit kernel path            the directory with vmlinux and vmlinux.h
    labkit kernel export -o FILE  the built lab kernel as one checksummed file
    labkit kernel import FILE [--to DIR]   install such a file (DIR: shared by all users), no build
    labkit bpf build              compile bpf/*.bpf.c against the lab vmlinux.h
    labkit bpf load OBJ           (in the VM) load an object, show verifier errors
    labkit vm run -- CMD ...      run CMD as root in the lab VM, in this directory
    labkit vm start|stop|status   keep one lab VM running for `vm run` to reuse
    labkit vm snapshot            make (or check) the warm snapshot lab VMs restore
    labkit scenario list|describe NAME   the scenario library, without a VM
    labkit record NAME [--param k=v] [--design D] -o FILE   run a scenario in the lab VM, save its event log
    labkit show FILE [--packet N]  a recorded event log as a text timeline
    labkit demo                   boot the VM, run doctor and one storage program
    labkit open [--port N]        JupyterLab on your copy of the lessons, the lab VM proven to boot
    labkit cleanup                stop lab VMs and remove what they left behind
    labkit hub setup|start|up|status|stop   JupyterHub for a workshop (labkit/hub/)

Errors are one line: what failed, then what to run. Exit status 2 means
the lab could not do what was asked; `vm run` otherwise exits with the
guest command's status.
"""

import argparse
import contextlib
import os
import sys
import time

from labkit.errors import LabError


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except LabError as exc:
        sys.stderr.write(f"labkit: {exc.render()}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("labkit: interrupted; the lab VM it started was stopped\n")
        return 130
    except BrokenPipeError:
        return 0


def _parser():
    p = argparse.ArgumentParser(prog="labkit", description="The skb storage lab.")
    sub = p.add_subparsers()

    d = sub.add_parser("doctor", help="check the machine")
    d.add_argument("--vm", action="store_true", help="also boot the lab VM and start its scenario worker")
    d.add_argument("--no-probe", action="store_true", help="do not probe-boot under KVM")
    d.set_defaults(func=cmd_doctor)

    k = sub.add_parser("kernel", help="the lab kernel").add_subparsers()
    kb = k.add_parser("build", help="build the lab kernel (cached)")
    kb.add_argument("--verbose", "-v", action="store_true", help="show make's output")
    kb.add_argument("-j", "--jobs", type=int, default=None)
    kb.add_argument("--debug", action="store_true",
                    help="the debug flavour (KASAN, lockdep, kmemleak: kernel/debug.config)")
    kb.set_defaults(func=cmd_kernel_build)
    kp = k.add_parser("path", help="print the lab kernel directory")
    kp.add_argument("--debug", action="store_true", help="the debug flavour's")
    kp.set_defaults(func=cmd_kernel_path)
    from labkit.kernel import pack as kernelpack

    kernelpack.add_commands(k)  # export, import

    b = sub.add_parser("bpf", help="BPF programs").add_subparsers()
    bb = b.add_parser("build", help="compile bpf/*.bpf.c")
    bb.add_argument("--verbose", "-v", action="store_true")
    bb.set_defaults(func=cmd_bpf_build)
    bl = b.add_parser("load", help="load an object in the lab VM and report (verifier errors shown)")
    bl.add_argument("object", help="a .bpf.o, e.g. bpf/build/storage_basic.bpf.o")
    bl.add_argument("--prog", action="append", help="load only this program (repeatable)")
    bl.set_defaults(func=cmd_bpf_load)

    from labkit.vm import cli as vm_cli

    vm_cli.add_commands(sub)  # labkit vm run|start|stop|status|snapshot

    sc = sub.add_parser("scenario", help="the scenario library").add_subparsers()
    sc.add_parser("list", help="list scenarios and their parameters").set_defaults(func=cmd_scenario_list)
    sd = sc.add_parser("describe", help="describe a scenario (no VM needed)")
    sd.add_argument("name")
    sd.add_argument("--param", "-p", action="append", default=[], metavar="K=V")
    sd.add_argument("--design", default="storage", help="storage (the RFC), meta, gated or stash")
    sd.set_defaults(func=cmd_scenario_describe)

    rec = sub.add_parser("record", help="run a scenario in the lab VM and save its event log")
    rec.add_argument("name", nargs="?")
    rec.add_argument("--param", "-p", action="append", default=[], metavar="K=V")
    rec.add_argument("--design", default="storage",
                     help="keep the token with: storage (the RFC's skb storage), meta (the metadata buffer), "
                          "gated (a stash on gated tracepoints) or stash (the ungated side stash)")
    rec.add_argument("-o", "--output", help="the .jsonl file to write")
    rec.add_argument("--all", action="store_true", help="record every scenario variant into notebooks/data/")
    rec.add_argument("--timeout", type=float, default=60.0)
    rec.set_defaults(func=cmd_record)

    sh = sub.add_parser("show", help="print a recorded event log as a timeline")
    sh.add_argument("file")
    sh.add_argument("--packet", type=int, default=None)
    sh.set_defaults(func=cmd_show)

    sub.add_parser("demo", help="boot the lab VM, run doctor and one storage program").set_defaults(func=cmd_demo)
    op = sub.add_parser("open", help="JupyterLab on your copy of the lessons, the lab VM proven to boot first")
    op.add_argument("--port", type=int, help="default: the first free one from 8888")
    op.add_argument("--ip", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    op.add_argument("--no-vm", action="store_true", help="skip the VM boot check")
    op.add_argument("--workdir", help="your copy of the lessons (default $LABKIT_WORKDIR, else ~/skb-lab-notebooks; "
                    "made on the first open, your work is never overwritten)")
    op.set_defaults(func=cmd_open)
    sub.add_parser("cleanup", help="stop lab VMs and remove leftovers").set_defaults(func=cmd_cleanup)
    from labkit.hub import cli as hub_cli

    hub_cli.add_commands(sub)  # labkit hub setup|start|up|status|stop
    from labkit.lite import site as lite

    lite.add_commands(sub)  # labkit lite build
    return p


def cmd_doctor(args):
    from labkit import paths
    from labkit.vm import preflight

    if paths.in_guest():
        checks = preflight.guest_checks()
    else:
        checks = preflight.host_checks(probe_kvm=not args.no_probe)
        if getattr(args, "vm", False) and all(c.ok for c in checks):
            checks.append(_agent_check())
    print(preflight.report(checks))
    return 0 if all(c.ok for c in checks) else 1


def _agent_check():
    """Boot (or reach) the lab VM, start the scenario worker, time both."""
    from labkit.runtime.session import Session
    from labkit.vm import persistent
    from labkit.vm.preflight import Check

    try:
        with persistent.persistent_lock():
            lab, reused = persistent.open_lab()
            t0 = time.monotonic()
            s = Session(lab)
            try:
                s.start()
                boot = "reused the running VM" if reused else f"booted in {lab.boot_seconds:.1f}s"
                detail = (f"{boot}; scenario worker ready in {time.monotonic() - t0:.1f}s "
                          f"(its imports {s.ready.get('start_s')}s)")
            finally:
                s.close()
                if not reused:
                    lab.close()
                elif lab.chan:
                    lab.chan.close()
        return Check("lab VM agent", True, detail)
    except LabError as exc:
        return Check("lab VM agent", False, exc.message, exc.fix)


def cmd_kernel_build(args):
    from labkit import kernel
    from labkit.kernel.build import build

    if args.debug:
        os.environ["LABKIT_KERNEL_FLAVOUR"] = "debug"
    t0 = time.monotonic()
    out = build(verbose=args.verbose, jobs=args.jobs)
    info = kernel.info(out)
    sys.stderr.write(f"lab kernel {info['release']} ready in {time.monotonic() - t0:.1f}s\n")
    print(out)


def cmd_kernel_path(args):
    from labkit import kernel

    if args.debug:
        os.environ["LABKIT_KERNEL_FLAVOUR"] = "debug"
    print(kernel.kernel_path())


def cmd_bpf_build(args):
    from labkit.bpf import build as bpfbuild

    objs = bpfbuild.build_all(verbose=args.verbose)
    for o in objs:
        print(o)


def cmd_bpf_load(args):
    from labkit import paths
    from labkit.bpf.libbpf import BpfObject

    if not paths.in_guest():
        raise LabError("loading BPF programs needs the lab kernel",
                       fix=f"run it in the lab VM: labkit vm run -- labkit bpf load {args.object}")
    if not os.path.exists(args.object):
        raise LabError(f"{args.object} does not exist", fix="run: labkit bpf build")
    with BpfObject(args.object, programs=args.prog) as obj:
        for name, prog in obj.programs.items():
            if prog.fd >= 0:
                print(f"loaded {name} ({prog.section})")


def cmd_open(args):
    from labkit.course import jupyter

    return jupyter.open_lab(port=args.port, ip=args.ip, probe_vm=not args.no_vm, workdir=args.workdir)


def cmd_demo(args):
    from labkit import demo

    return demo.run()


def _params(pairs):
    out = {}
    for kv in pairs:
        if "=" not in kv:
            raise LabError(f"--param {kv!r} is not K=V", fix="write it like --param kind=gre")
        k, v = kv.split("=", 1)
        out[k] = v
    return out


def cmd_scenario_list(args):
    from labkit import scenarios

    for name in scenarios.NAMES:
        mod = scenarios.module(name)
        params = " ".join(f"{k}={'|'.join(map(str, v))}" for k, v in getattr(mod, "PARAMS", {}).items())
        first = (mod.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<16} {params}\n    {first}")


def cmd_scenario_describe(args):
    from labkit import scenarios

    print(scenarios.get(args.name, **_params(args.param)).with_design(args.design).describe())


def cmd_record(args):
    from labkit import scenarios
    from labkit.runtime.events import ExpectationError, expect

    if args.all:
        jobs = [(scenarios.get(n, **p), scenarios.recording_path(n, p)) for n, p in scenarios.variants()]
        jobs += [(scenarios.get(n, flags=f, **p), scenarios.recording_path(n, p, f))
                 for n, p, f in scenarios.flagged_variants()]
        jobs += [(scenarios.get(n, design=d, **p), scenarios.recording_path(n, {**p, "design": d}))
                 for n, p, d in scenarios.designed_variants()]
    elif args.name and args.output:
        jobs = [(scenarios.get(args.name, **_params(args.param)).with_design(args.design), args.output)]
    else:
        raise LabError("say what to record", fix="labkit record NAME [-p K=V] -o FILE, or labkit record --all")
    t0 = time.monotonic()
    status = 0
    with _runner() as run:
        for sc, out in jobs:
            log = run(sc, args.timeout)
            path = log.save(out)
            if not args.all:
                print(log.timeline())
            sys.stderr.write(f"{sc.name} {sc.params}: {len(log)} events from {len(log.packets())} packets, "
                             f"saved to {path}\n")
            try:
                for p in log.packets():
                    expect(log, sc.expect, packet=p)
            except ExpectationError as exc:
                sys.stderr.write(f"labkit: the kernel did not take the scenario's expected path: {exc}\n")
                status = 1
    sys.stderr.write(f"done in {time.monotonic() - t0:.1f}s\n")
    return status


@contextlib.contextmanager
def _runner():
    """run(scenario, timeout) -> EventLog: in this kernel inside the VM, else
    through a scenario worker in the persistent VM or a fresh one."""
    from labkit import paths

    if paths.in_guest():
        from labkit.runtime import run as runtime

        yield lambda sc, timeout: runtime.run(sc)
        return
    from labkit.runtime.session import Session
    from labkit.vm import persistent

    with persistent.persistent_lock():
        lab, reused = persistent.open_lab()
        if not reused:
            sys.stderr.write("booting the lab VM (labkit vm start keeps one up between commands)\n")
        try:
            with Session(lab) as s:
                yield lambda sc, timeout: s.run(sc, timeout=timeout)
        finally:
            if not reused:
                lab.close()
            elif lab.chan:
                lab.chan.close()


def cmd_show(args):
    from labkit.runtime.events import EventLog

    print(EventLog.load(args.file).timeline(packet=args.packet))


def cmd_cleanup(args):
    from labkit.vm import cleanup

    for line in cleanup.sweep():
        print(line)


if __name__ == "__main__":
    sys.exit(main())
