"""``./lab test``: every test tier, the way CI runs them.

0. ``lint-imports``: the architecture (the layers and no-cycle contracts in
   ``pyproject.toml``), in a second.
1. ``tests/unit`` and ``tests/host`` on the host: pure logic, the CLI's
   errors, and the lab VM driven from outside (each of those boots its own),
   in two pytest-xdist workers (``workers()``; a module's tests stay in one).
2. ``tests/lab`` inside two lab VMs at once, as root on the lab kernel,
   restored from their warm snapshot (``labkit.vm.snapshot``): each VM runs
   half of the files (``split``), so no test shares a kernel with one that
   runs at the same time.
3. The lifetime and finding tests (``DEBUG_TESTS``) again, on the debug
   kernel (KASAN, lockdep, kmemleak: ``kernel/debug.config``), where a
   kernel splat fails the test that caused it. This VM boots cold, so the
   lab's tests run on a booted guest as well as on a restored one. The debug kernel is built
   in the background (``labkit kernel build --debug``, niced, cached like
   the other) from the end of the host tier, whose interrupt and workshop
   tests are timing-sensitive, while the lab tier runs.
4. ``tests/notebooks`` and ``tests/browser`` on the host: every lesson
   live (each boots its VM) and in replay as an unprivileged user, and
   JupyterLab in headless Chromium, in two workers; then, alone, the test
   that the tier left the checkout clean. When the debug kernel is still
   building as the lab tier ends (a first run), this tier runs before the
   debug tier rather than waiting for it.

Extra arguments go to both pytest runs. The closing line counts all tiers:
``tests: N passed, N failed, N skipped``.
"""

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from labkit import paths
from labkit.errors import LabError


def counts(xml_path):
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root)
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        for k in total:
            total[k] += int(s.get(k, 0))
    return total


# The debug kernel's alone (lkdtm): tests/lab/conftest.py leaves it out elsewhere, unless named.
DEBUG_ONLY = "tests/lab/test_zz_splat_scan.py"

# On the debug kernel: the review's findings and the second read's (each
# where it matters under both implementations), the lifetime rules, the
# lookup the verifier inlines (kernel patch 0010: it reads the extension
# block without the kfunc), the metadata buffer's rules where blocks are
# made, shared, copied and freed (one IP and one UDP tunnel; the verifier's
# refusals and the other tunnels run on the production kernel only) and the
# gated tracepoints' (patches 0011 and 0012), and the proof that the splat scan sees a
# planted fault and a read of a parked spare block. The rest of tests/lab
# (API, flags, the flag tests again under both implementations, program
# types, scenarios, tracepoints, the benchmark) runs on the production
# kernel only: under KASAN a lab test takes ~13 s, and the whole tier would
# not fit CI's budget.
DEBUG_TESTS = ["tests/lab/test_findings.py", "tests/lab/test_second_read.py", "tests/lab/test_lifetime.py",
               "tests/lab/test_inline.py::test_an_inlined_lookup_finds_the_element_without_a_call",
               "tests/lab/test_inline.py::test_the_inlined_lookup_compares_the_map_passed_at_run_time",
               "tests/lab/test_inline.py::test_a_deleted_inline_element_is_not_found",
               *(f"tests/lab/test_skb_ext.py::{t}" for t in (
                   "test_create_gives_a_zero_filled_writable_buffer_and_reopening_a_read_only_view",
                   "test_a_clone_shares_the_buffer", "test_a_write_to_a_shared_buffer_copies_it",
                   "test_kept_across_a_veth_scrub", "test_kept_across_a_tunnel[gre-encap]",
                   "test_kept_across_a_tunnel[gre-decap]", "test_kept_across_a_tunnel[vxlan-encap]",
                   "test_kept_across_a_tunnel[vxlan-decap]", "test_both_extensions_on_one_skb")),
               "tests/lab/test_gated.py", DEBUG_ONLY]


# The lab tier's files and their seconds (two restored VMs at once under TCG, on 2 cores: a CI
# rehearsal's junit reports), to split them between LABKIT_LAB_VMS VMs (default 2).
LAB_SECONDS = {"tests/lab/test_api.py": 3, "tests/lab/test_basic.py": 2, "tests/lab/test_bench.py": 11,
               "tests/lab/test_cleanup.py": 4, "tests/lab/test_clock.py": 1, "tests/lab/test_designs.py": 65,
               "tests/lab/test_findings.py": 23, "tests/lab/test_flags.py": 64, "tests/lab/test_gated.py": 9,
               "tests/lab/test_inline.py": 46, "tests/lab/test_later_hooks.py": 1, "tests/lab/test_lifetime.py": 26,
               "tests/lab/test_prog_types.py": 2, "tests/lab/test_scenarios.py": 106,
               "tests/lab/test_second_read.py": 13, "tests/lab/test_skb_ext.py": 25,
               "tests/lab/test_tracepoints.py": 13}
# The lessons tier's last test, run after the tier's workers.
LAST = "tests/browser/test_zz_clean_checkout.py"


def workers() -> list[str]:
    """pytest-xdist's options for a host-side tier: ``$LABKIT_TEST_WORKERS`` processes (default 2),
    a module's tests in one of them (tests/conftest.py's groups). Most of those tiers' time is
    waiting on a VM, a hub or a timer, so two share two cores well; 1: no workers."""
    n = int(os.environ.get("LABKIT_TEST_WORKERS", "2"))
    return ["-n", str(n), "--dist", "loadgroup"] if n > 1 else []


def start_debug_build(log_path):
    """``labkit kernel build --debug`` in the background, at low priority."""
    log = open(log_path, "wb")
    return subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "labkit.cli", "kernel", "build", "--debug"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=paths.PROJECT)


def split(files, n, seconds) -> list[list[str]]:
    """files into n groups of about equal time (seconds: a file's measured time; 5 s when unknown),
    the longest first into the group with the least so far."""
    groups = [[] for _ in range(max(1, n))]
    load = [0.0] * len(groups)
    for f in sorted(files, key=lambda f: (-seconds.get(f, 5.0), f)):
        i = load.index(min(load))
        groups[i].append(f)
        load[i] += seconds.get(f, 5.0)
    return [sorted(g) for g in groups if g]


def lab_groups(n) -> list[list[str]]:
    files = sorted(str(p.relative_to(paths.PROJECT)) for p in (paths.PROJECT / "tests" / "lab").glob("test_*.py"))
    files.remove(DEBUG_ONLY)
    return split(files, n, LAB_SECONDS)


def run_lab_tier(name, groups, xml, argv, kernel_dir=None, snapshot=True) -> int:
    """Each group of tests in a lab VM of its own (restored from its warm snapshot, or booted cold:
    snapshot=False), all at once; each group's report is xml-<i>.xml. The worst exit code."""
    if len(groups) == 1:
        return lab_group(name, groups[0], xml, argv, kernel_dir, snapshot, None)
    lock = threading.Lock()
    codes = [2] * len(groups)

    def one(i):
        codes[i] = lab_group(f"{name} {i + 1}", groups[i], report(xml, i), argv, kernel_dir, snapshot, lock)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(codes)


def report(xml, i) -> Path:
    return xml.with_name(f"{xml.stem}-{i + 1}{xml.suffix}")


def lab_group(name, tests, xml, argv, kernel_dir, snapshot, lock) -> int:
    """tests in one lab VM; with lock (groups at once), each line of output marked with the group's name."""
    from labkit.vm.lab import Lab

    pending = {1: b"", 2: b""}

    def say(fd, data):
        pending[fd] += data
        *lines, pending[fd] = pending[fd].split(b"\n")
        target = sys.stdout if fd == 1 else sys.stderr
        with lock:
            for line in lines:
                target.write(f"[{name}] {line.decode(errors='replace')}\n")
            target.flush()

    def tell(text):
        if lock:
            say(1, f"{text}\n".encode())
        else:
            print(text, flush=True)

    try:
        # The guest's pytest writes artifacts/ in the working folder.
        with Lab(kernel_dir, workdir=paths.PROJECT, snapshot=snapshot) as lab:
            how = f"restored from {lab.warm.dir.name}" if lab.warm else "booted cold"
            tell(f"lab VM: kernel {lab.release}, accel {lab.accel} ({lab.accel_why}), "
                 f"{how} in {lab.boot_seconds:.1f}s")
            res = lab.run([sys.executable, "-m", "pytest", *tests, "-v", "--durations=15", f"--junitxml={xml}", *argv],
                          cwd=str(paths.PROJECT), stream=say if lock else True, timeout=2400)
            for fd, rest in pending.items():
                if rest:
                    say(fd, b"\n")
            return res.code
    except LabError as exc:
        tell(f"labkit: {name} tier: {exc.render()}")
        return 2


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = paths.PROJECT / "artifacts"
    out.mkdir(exist_ok=True)
    host_xml, lab_xml, nb_xml = out / "junit-host.xml", out / "junit-lab.xml", out / "junit-lessons.xml"
    debug_xml = out / "junit-debug.xml"
    for f in out.glob("junit-*.xml"):
        f.unlink()
    lab_n = int(os.environ.get("LABKIT_LAB_VMS", "2"))

    print("== architecture: lint-imports (the contracts in pyproject.toml)", flush=True)
    lint_rc = subprocess.call([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
                              cwd=paths.PROJECT)

    print("\n== host tier: tests/unit tests/host", flush=True)
    host_rc = subprocess.call([sys.executable, "-m", "pytest", "tests/unit", "tests/host", *workers(),
                               "--durations=25", f"--junitxml={host_xml}", *argv], cwd=paths.PROJECT)

    debug_log = out / "kernel-debug-build.log"
    print(f"\n== the debug kernel builds in the background (log: {debug_log})", flush=True)
    t_build = time.monotonic()
    debug_build = start_debug_build(debug_log)

    print("\n== lab tier: tests/lab inside the lab VM", flush=True)
    lab_rc = run_lab_tier("lab", lab_groups(lab_n), lab_xml, argv)

    def lessons_tier():
        print("\n== lessons tier: tests/notebooks tests/browser", flush=True)
        # The clean-checkout test last, on its own, against the state before the tier (tests/checkout.py).
        before = out / "checkout-before.json"
        before.unlink(missing_ok=True)
        env = {**os.environ, "LABKIT_CHECKOUT_BEFORE": str(before)}
        rc = subprocess.call([sys.executable, "-m", "pytest", "tests/notebooks", "tests/browser", "-v", *workers(),
                              f"--ignore={LAST}", "--durations=25", f"--junitxml={nb_xml}", *argv],
                             cwd=paths.PROJECT, env=env)
        last = subprocess.call([sys.executable, "-m", "pytest", LAST, "-v", f"--junitxml={report(nb_xml, 0)}", *argv],
                               cwd=paths.PROJECT, env=env)
        before.unlink(missing_ok=True)
        return rc or last

    nb_rc = None
    if debug_build.poll() is None:
        print("\n(the debug kernel is still building: the lessons tier goes first)", flush=True)
        nb_rc = lessons_tier()

    print("\n== debug tier: the lifetime and finding tests on the debug kernel", flush=True)
    rc = debug_build.wait()
    print(f"debug kernel build: exit {rc} after {time.monotonic() - t_build:.0f}s (log: {debug_log})", flush=True)
    if rc == 0:
        from labkit import kernel

        os.environ["LABKIT_KERNEL_FLAVOUR"] = "debug"
        try:
            debug_dir = kernel.kernel_path()
        finally:
            os.environ.pop("LABKIT_KERNEL_FLAVOUR", None)
        debug_rc = run_lab_tier("debug", [DEBUG_TESTS], debug_xml, argv, kernel_dir=debug_dir, snapshot=False)
    else:
        print(debug_log.read_text(errors="replace")[-3000:], file=sys.stderr)
        debug_rc = 2

    if nb_rc is None:
        nb_rc = lessons_tier()

    passed, failed, skipped = (1, 0, 0) if lint_rc == 0 else (0, 1, 0)
    for name, xml in (("host", host_xml), ("lab", lab_xml), ("debug", debug_xml), ("lessons", nb_xml)):
        found = [x for x in (xml, *sorted(out.glob(f"{xml.stem}-*.xml"))) if x.exists()]
        c = [counts(x) for x in found]
        if not found or None in c:
            print(f"{name} tier left no report ({xml})", file=sys.stderr)
            failed += 1
            continue
        for one in c:
            f = one["failures"] + one["errors"]
            passed += one["tests"] - f - one["skipped"]
            failed += f
            skipped += one["skipped"]
    print(f"\ntests: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if lint_rc == host_rc == lab_rc == debug_rc == nb_rc == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
