"""``labkit``: the command line of the skb storage lab.

    labkit doctor                 what this machine can do, and what to fix
    labkit kernel build           build (or find in the cache) the lab kernel
    labkit kernel path            the directory with vmlinux and vmlinux.h
    labkit bpf build              compile bpf/*.bpf.c against the lab vmlinux.h
    labkit bpf load OBJ           (in the VM) load an object, show verifier errors
    labkit vm run -- CMD ...      run CMD as root in the lab VM, in this directory
    labkit vm start|stop|status   keep one lab VM running for `vm run` to reuse
    labkit demo                   boot the VM, run doctor and one storage program
    labkit cleanup                stop lab VMs and remove what they left behind

Errors are one line: what failed, then what to run. Exit status 2 means
the lab could not do what was asked; `vm run` otherwise exits with the
guest command's status.
"""

import argparse
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


def _parser():
    p = argparse.ArgumentParser(prog="labkit", description="The skb storage lab.")
    sub = p.add_subparsers()

    d = sub.add_parser("doctor", help="check the machine")
    d.add_argument("--no-probe", action="store_true", help="do not probe-boot under KVM")
    d.set_defaults(func=cmd_doctor)

    k = sub.add_parser("kernel", help="the lab kernel").add_subparsers()
    kb = k.add_parser("build", help="build the lab kernel (cached)")
    kb.add_argument("--verbose", "-v", action="store_true", help="show make's output")
    kb.add_argument("-j", "--jobs", type=int, default=None)
    kb.set_defaults(func=cmd_kernel_build)
    k.add_parser("path", help="print the lab kernel directory").set_defaults(func=cmd_kernel_path)

    b = sub.add_parser("bpf", help="BPF programs").add_subparsers()
    bb = b.add_parser("build", help="compile bpf/*.bpf.c")
    bb.add_argument("--verbose", "-v", action="store_true")
    bb.set_defaults(func=cmd_bpf_build)
    bl = b.add_parser("load", help="load an object in the lab VM and report (verifier errors shown)")
    bl.add_argument("object", help="a .bpf.o, e.g. bpf/build/storage_basic.bpf.o")
    bl.add_argument("--prog", action="append", help="load only this program (repeatable)")
    bl.set_defaults(func=cmd_bpf_load)

    v = sub.add_parser("vm", help="the lab VM").add_subparsers()
    vr = v.add_parser("run", help="run a command as root in the lab VM")
    vr.add_argument("--timeout", type=float, default=600.0, help="seconds before the VM is stopped (default 600)")
    vr.add_argument("cmd", nargs=argparse.REMAINDER)
    vr.set_defaults(func=cmd_vm_run)
    v.add_parser("start", help="boot a lab VM that stays up").set_defaults(func=cmd_vm_start)
    v.add_parser("stop", help="stop the lab VM that stays up").set_defaults(func=cmd_vm_stop)
    v.add_parser("status", help="is a lab VM up").set_defaults(func=cmd_vm_status)

    sub.add_parser("demo", help="boot the lab VM, run doctor and one storage program").set_defaults(func=cmd_demo)
    sub.add_parser("cleanup", help="stop lab VMs and remove leftovers").set_defaults(func=cmd_cleanup)
    return p


def cmd_doctor(args):
    from labkit import preflight, paths

    if paths.in_guest():
        checks = preflight.guest_checks()
    else:
        checks = preflight.host_checks(probe_kvm=not args.no_probe)
    print(preflight.report(checks))
    return 0 if all(c.ok for c in checks) else 1


def cmd_kernel_build(args):
    from labkit import kernel

    t0 = time.monotonic()
    out = kernel.build(verbose=args.verbose, jobs=args.jobs)
    info = kernel.info(out)
    sys.stderr.write(f"lab kernel {info['release']} ready in {time.monotonic() - t0:.1f}s\n")
    print(out)


def cmd_kernel_path(args):
    from labkit import kernel

    print(kernel.kernel_path())


def cmd_bpf_build(args):
    from labkit import bpfbuild

    objs = bpfbuild.build_all(verbose=args.verbose)
    for o in objs:
        print(o)


def cmd_bpf_load(args):
    from labkit import paths
    from labkit.libbpf import BpfObject

    if not paths.in_guest():
        raise LabError("loading BPF programs needs the lab kernel",
                       fix=f"run it in the lab VM: labkit vm run -- labkit bpf load {args.object}")
    if not os.path.exists(args.object):
        raise LabError(f"{args.object} does not exist", fix="run: labkit bpf build")
    with BpfObject(args.object, programs=args.prog) as obj:
        for name, prog in obj.programs.items():
            if prog.fd >= 0:
                print(f"loaded {name} ({prog.section})")


def cmd_vm_run(args):
    from labkit import vm

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise LabError("no command given", fix="usage: labkit vm run -- CMD [ARGS...]")
    from labkit import paths

    if paths.in_guest():
        raise LabError("this is already the lab VM", fix=f"run the command directly: {' '.join(cmd)}")
    with vm.persistent_lock():
        lab, reused = vm.open_lab()
        if not reused:
            lab.start()
        try:
            res = lab.run(cmd, timeout=args.timeout, stream=True)
        finally:
            if reused:
                if lab.chan:
                    lab.chan.close()
            else:
                lab.close()
    return res.code


def cmd_vm_start(args):
    from labkit import vm

    with vm.persistent_lock():
        state = vm.start_persistent()
    print(f"lab VM up: pid {state['pid']}, kernel {state['release']}, accel {state['accel']} "
          f"({state.get('accel_why') or 'reused'}); stop it with: labkit vm stop")


def cmd_vm_stop(args):
    from labkit import vm

    print("lab VM stopped" if vm.stop_persistent() else "no lab VM was running")


def cmd_vm_status(args):
    from labkit import vm

    state = vm.persistent_state()
    if state:
        print(f"running: pid {state['pid']}, kernel {state['release']}, accel {state['accel']}")
        return 0
    print("no lab VM running")
    return 1


def cmd_demo(args):
    from labkit import demo

    return demo.run()


def cmd_cleanup(args):
    from labkit import cleanup

    for line in cleanup.sweep():
        print(line)


if __name__ == "__main__":
    sys.exit(main())
