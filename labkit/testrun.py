"""``./lab test``: every test tier, the way CI runs them.

1. ``tests/unit`` and ``tests/host`` on the host: pure logic, the CLI's
   errors, and the lab VM driven from outside (each of those boots its own).
2. ``tests/lab`` inside one lab VM, as root on the lab kernel.
3. ``tests/notebooks`` and ``tests/browser`` on the host: every lesson
   live (each boots its VM) and in replay as an unprivileged user, and
   JupyterLab in headless Chromium.

Extra arguments go to both pytest runs. The closing line counts all tiers:
``tests: N passed, N failed, N skipped``.
"""

import subprocess
import sys
import xml.etree.ElementTree as ET

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


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = paths.PROJECT / "artifacts"
    out.mkdir(exist_ok=True)
    host_xml, lab_xml, nb_xml = out / "junit-host.xml", out / "junit-lab.xml", out / "junit-lessons.xml"
    for f in (host_xml, lab_xml, nb_xml):
        f.unlink(missing_ok=True)

    print("== host tier: tests/unit tests/host", flush=True)
    host_rc = subprocess.call([sys.executable, "-m", "pytest", "tests/unit", "tests/host",
                               f"--junitxml={host_xml}", *argv], cwd=paths.PROJECT)

    print("\n== lab tier: tests/lab inside the lab VM", flush=True)
    from labkit.vm import Lab

    try:
        with Lab(workdir=paths.PROJECT) as lab:  # the guest's pytest writes artifacts/ there
            print(f"lab VM: kernel {lab.release}, accel {lab.accel} ({lab.accel_why}), "
                  f"booted in {lab.boot_seconds:.1f}s", flush=True)
            res = lab.run([sys.executable, "-m", "pytest", "tests/lab", "-v", f"--junitxml={lab_xml}", *argv],
                          cwd=str(paths.PROJECT), stream=True, timeout=1800)
            lab_rc = res.code
    except LabError as exc:
        print(f"labkit: {exc.render()}", file=sys.stderr)
        lab_rc = 2

    print("\n== lessons tier: tests/notebooks tests/browser", flush=True)
    nb_rc = subprocess.call([sys.executable, "-m", "pytest", "tests/notebooks", "tests/browser", "-v",
                             f"--junitxml={nb_xml}", *argv], cwd=paths.PROJECT)

    passed = failed = skipped = 0
    for name, xml in (("host", host_xml), ("lab", lab_xml), ("lessons", nb_xml)):
        c = counts(xml)
        if c is None:
            print(f"{name} tier left no report ({xml})", file=sys.stderr)
            failed += 1
            continue
        f = c["failures"] + c["errors"]
        passed += c["tests"] - f - c["skipped"]
        failed += f
        skipped += c["skipped"]
    print(f"\ntests: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if host_rc == 0 and lab_rc == 0 and nb_rc == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
