"""``labkit hub setup``: a read-only install of the lab that every student can use.

Layout under the prefix (default /opt/skb-lab), all root-owned, readable by
everyone, writable by no student:

    src/      this checkout's tracked files (git ls-files), without bpf/build
    venv/     a venv of Debian's /usr/bin/python3 (a Python under /root is out
              of the students' reach) with src[live,lab,hub] installed in editable
              mode, so labkit finds its notebooks, bpf/ and kernel/ in src/
    node/     configurable-http-proxy from npm, the version pinned below
    kernel/   the lab kernel, imported from an export (``labkit kernel export``):
              the hub builds none
    bpf-build/  the lab's BPF objects, compiled here for that kernel: every
              student's lessons load these (LABKIT_BPF_BUILD), and the warm
              snapshot's guest has the observer loaded from them already
    setup.json  what was installed, from which commit, and the kernel's path

Re-running it refreshes src/ and reinstalls only what changed (pyproject.toml,
the proxy's version, another kernel). Needs root; the state of a running hub
(``<prefix>/state``) is left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit import paths
from labkit.errors import LabError
from labkit.hub.disk import SCRATCH

DEFAULT_PREFIX = "/opt/skb-lab"
CHP_VERSION = "4.6.3"  # configurable-http-proxy; JupyterHub 5's own images use 4.x
SYSTEM_PYTHON = "/usr/bin/python3"


def say(text):
    sys.stderr.write(f"[hub setup] {text}\n")
    sys.stderr.flush()


def run(argv, what, fix="see the output below, fix it, run again", **kw):
    res = subprocess.run(argv, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        said = [ln for ln in res.stderr.splitlines() if ln.startswith("labkit: ")]
        if said:  # labkit's own one-line error says it best
            raise LabError(f"{what}: {said[-1].removeprefix('labkit: ').split(' -- ')[0]}", fix=fix)
        raise LabError(f"{what} failed (exit {res.returncode})", fix=fix, details=(res.stdout + res.stderr)[-3000:])
    return res.stdout


def tracked_files(project: Path) -> list[str]:
    if not (project / ".git").exists():
        raise LabError(f"{project} is not a git checkout", fix="run labkit hub setup from a clone of the lab")
    out = run(["git", "-C", str(project), "ls-files", "-z"], "git ls-files")
    return [f for f in out.split("\0") if f and (project / f).is_file() and not f.startswith("bpf/build/")]


def copy_source(project: Path, prefix: Path) -> Path:
    """prefix/src = the tracked files, swapped in whole (a failed copy leaves the old one)."""
    files = tracked_files(project)
    new = Path(tempfile.mkdtemp(prefix=".src-", dir=prefix))
    try:
        os.chmod(new, 0o755)
        for rel in files:
            dst = new / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(project / rel, dst, follow_symlinks=False)
        src = prefix / "src"
        old = prefix / f".src-old-{os.getpid()}"
        if src.exists():
            src.rename(old)
        new.rename(src)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    say(f"src: {len(files)} files from {project}")
    return src


def _stamp(prefix: Path) -> str:
    return hashlib.sha256((prefix / "src" / "pyproject.toml").read_bytes()).hexdigest()[:16]


def make_venv(prefix: Path):
    venv = prefix / "venv"
    stamp = venv / ".labkit-hub-installed"
    if not (venv / "bin" / "python").exists():
        if not os.path.exists(SYSTEM_PYTHON):
            raise LabError(f"{SYSTEM_PYTHON} is missing", fix="apt-get install python3 python3-venv")
        say(f"venv: creating {venv} with {SYSTEM_PYTHON}")
        run([SYSTEM_PYTHON, "-m", "venv", str(venv)], "python3 -m venv")
    # Editable, so labkit's PROJECT is prefix/src; reinstalled when src/ was swapped in.
    want = _stamp(prefix)
    have = stamp.read_text().strip() if stamp.exists() else ""
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import labkit, jupyterhub, jupyterlab, jupyterhub_idle_culler; print(labkit.__file__)"],
                           capture_output=True, text=True, cwd="/")  # not the checkout's labkit from the cwd
    if want != have or probe.returncode != 0 or not probe.stdout.startswith(str(prefix / "src")):
        say("venv: installing labkit[live,lab,hub] (a few minutes the first time)")
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"], "pip upgrade")
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-e", f"{prefix / 'src'}[live,lab,hub]"],
            "pip install labkit[live,lab,hub]")
        stamp.write_text(want + "\n")
    else:
        say("venv: up to date")


def chp_path(prefix: Path) -> Path:
    return prefix / "node" / "node_modules" / ".bin" / "configurable-http-proxy"


def install_proxy(prefix: Path):
    node = prefix / "node"
    pkg = node / "node_modules" / "configurable-http-proxy" / "package.json"
    if pkg.exists() and json.loads(pkg.read_text()).get("version") == CHP_VERSION:
        say(f"proxy: configurable-http-proxy {CHP_VERSION} already there")
        return
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise LabError(f"{tool} is not installed", fix="apt-get install nodejs npm (./lab hub does it)")
    say(f"proxy: npm install configurable-http-proxy@{CHP_VERSION}")
    node.mkdir(exist_ok=True)
    run(["npm", "install", "--prefix", str(node), "--no-audit", "--no-fund", "--omit=dev",
         f"configurable-http-proxy@{CHP_VERSION}"], "npm install configurable-http-proxy")


def install_kernel(prefix: Path, artifact: str | None) -> str:
    """Import the kernel (the given export, else an export of this user's own); its directory."""
    labkit = [str(prefix / "venv" / "bin" / "labkit")]
    with tempfile.TemporaryDirectory(prefix="labkit-hub-kernel-") as tmp:
        if artifact is None:
            artifact = os.path.join(tmp, "lab-kernel.tar")
            say("kernel: exporting your lab kernel (labkit kernel path)")
            run([sys.executable, "-m", "labkit.cli", "kernel", "export", "-o", artifact],
                "no lab kernel to install", cwd=paths.PROJECT,
                fix="build it first (labkit kernel build) or give an exported one: --kernel FILE")
        say(f"kernel: importing {artifact} into {prefix / 'kernel'}")
        out = run([*labkit, "kernel", "import", str(Path(artifact).absolute()), "--to", str(prefix / "kernel")],
                  "labkit kernel import", cwd=str(prefix / "src"), env={**os.environ, "LABKIT_KERNEL_DIR": ""})
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    kdir = lines[-1] if lines else ""
    if not kdir or not os.path.isfile(os.path.join(kdir, "vmlinux")):
        raise LabError("labkit kernel import did not say where the kernel went", details=out)
    return kdir


def bpf_dir(prefix) -> Path:
    return Path(prefix) / "bpf-build"


def build_bpf(prefix: Path, kdir: str):
    """The lab's BPF objects for every student, compiled once (students would each compile them
    into their own cache, and the shared warm snapshot could preload none of them)."""
    say(f"BPF programs: compiling them for the lab kernel into {bpf_dir(prefix)}")
    env = {"PATH": f"{prefix}/venv/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root"),
           "LABKIT_KERNEL_DIR": kdir, "LABKIT_BPF_BUILD": str(bpf_dir(prefix))}
    run([str(prefix / "venv" / "bin" / "labkit"), "bpf", "build"], "compiling the lab's BPF programs",
        cwd=str(prefix / "src"), env=env, fix="install clang and llvm (./lab setup installs them), then run again")


def seal(prefix: Path):
    """Root-owned, world-readable, writable by root alone (state/ is the hub's own business)."""
    for root, dirs, files in os.walk(prefix):
        if Path(root) == prefix and "state" in dirs:
            dirs.remove("state")
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if os.path.islink(p):
                os.lchown(p, 0, 0)
                continue
            os.chown(p, 0, 0)
            mode = st.st_mode & 0o7777
            mode = (mode | 0o444 | (0o111 if mode & 0o111 or os.path.isdir(p) else 0)) & ~0o022
            os.chmod(p, mode)
    os.chown(prefix, 0, 0)
    os.chmod(prefix, 0o755)


def warm_snapshot(prefix: Path, kernel_dir: str, say) -> str:
    """Make (or find fresh) the warm snapshot every student's lab VM restores:
    ``labkit vm snapshot`` as root, in a clean environment (what it holds, every
    student's guest holds), into ``<prefix>/snapshots`` (readable by all,
    writable by no student). Its folder, or "" when it cannot be made: the
    students' VMs then boot cold, and ``labkit doctor`` says so."""
    d = prefix / "snapshots"
    env = {"PATH": f"{prefix}/venv/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root"),
           "LABKIT_KERNEL_DIR": kernel_dir, "LABKIT_SNAPSHOTS": str(d), "LABKIT_BPF_BUILD": str(bpf_dir(prefix))}
    say("the students' warm lab VM snapshot (made once per kernel and install; about 20 s) ...")
    res = subprocess.run([str(prefix / "venv" / "bin" / "labkit"), "vm", "snapshot"], env=env, cwd=str(prefix),
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        say(f"  no warm snapshot, the students' lab VMs boot cold: {(res.stderr or res.stdout).strip()[-500:]}")
        return ""
    say(f"  {res.stdout.strip()}")
    return str(d)


def _running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def setup(prefix=DEFAULT_PREFIX, kernel=None) -> dict:
    if os.geteuid() != 0:
        raise LabError("labkit hub setup installs for every user and needs root", fix="run it with sudo")
    prefix = Path(prefix).absolute()
    for scratch in SCRATCH:
        if prefix == Path(scratch) or Path(scratch) in prefix.parents:
            raise LabError(f"the install cannot live under {scratch}: each student's server has its own {scratch}",
                           fix="choose another --prefix, e.g. /opt/skb-lab")
    t0 = time.monotonic()
    prefix.mkdir(parents=True, exist_ok=True)
    os.chmod(prefix, 0o755)
    for parent in prefix.parents:
        if not os.stat(parent).st_mode & 0o001:
            raise LabError(f"{parent} is not reachable by other users (no o+x)",
                           fix="choose another --prefix, e.g. /opt/skb-lab")
    hub_pid = prefix / "state" / "labkit-hub.pid"
    if hub_pid.exists() and _running(hub_pid):
        raise LabError(f"a hub runs from {prefix} (pid file {hub_pid})",
                       fix=f"stop it first: labkit hub stop --prefix {prefix}")
    copy_source(paths.PROJECT, prefix)
    make_venv(prefix)
    # Bytecode now: students cannot write __pycache__ in src/, and would compile labkit at every start.
    run([str(prefix / "venv" / "bin" / "python"), "-m", "compileall", "-q", str(prefix / "src" / "labkit")],
        "compiling labkit")
    install_proxy(prefix)
    kdir = install_kernel(prefix, kernel)
    build_bpf(prefix, kdir)
    commit = subprocess.run(["git", "-C", str(paths.PROJECT), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    info = {"prefix": str(prefix), "kernel_dir": kdir, "commit": commit, "proxy": CHP_VERSION,
            "python": SYSTEM_PYTHON, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (prefix / "setup.json").write_text(json.dumps(info, indent=2) + "\n")
    seal(prefix)
    say(f"done in {time.monotonic() - t0:.0f} s: {prefix}")
    return info


def installed(prefix) -> dict:
    """setup.json of an install, or a LabError saying to run the setup."""
    prefix = Path(prefix).absolute()
    try:
        info = json.loads((prefix / "setup.json").read_text())
    except (OSError, ValueError):
        raise LabError(f"no lab install at {prefix}", fix=f"run: labkit hub setup --prefix {prefix}") from None
    for need in (prefix / "venv" / "bin" / "jupyterhub", chp_path(prefix), Path(info.get("kernel_dir", "")) / "vmlinux"):
        if not need.exists():
            raise LabError(f"the install at {prefix} lacks {need}", fix=f"run: labkit hub setup --prefix {prefix}")
    return info
