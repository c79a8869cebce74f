"""deploy/: the Zero to JupyterHub values give each student room for the lab
VM the lab boots, keep the culler on, and use only keys the chart knows; the
single-user image's Containerfile copies files that exist."""

import inspect
import re
import shlex

import pytest
import yaml

from labkit import paths
from labkit.vm.lab import Lab

DEPLOY = paths.PROJECT / "deploy"
VALUES = DEPLOY / "kubernetes" / "values.yaml"
CONTAINERFILE = DEPLOY / "image" / "Containerfile"

GiB = 1024**3
# What a student's pod holds besides the guest's RAM: QEMU's own memory and
# TCG's translation cache (~0.3 GiB), the Jupyter server (~0.1), the lesson's
# kernel (~0.3) and clang compiling a %%bpf cell (~0.2).
MARGIN = 0.9 * GiB

# The keys the values use, as Zero to JupyterHub 4.x's values.schema.json
# names them (the chart refuses others): a typo here would fail `helm install`.
SCHEMA_KEYS = {
    "": {"hub", "singleuser", "cull", "prePuller", "proxy", "scheduling", "ingress", "custom", "debug",
         "rbac", "global", "imagePullSecret", "imagePullSecrets", "fullnameOverride", "nameOverride", "enabled"},
    "hub": {"config", "concurrentSpawnLimit", "activeServerLimit", "consecutiveFailureLimit", "extraConfig",
            "extraEnv", "extraFiles", "image", "resources", "db", "services", "loadRoles", "networkPolicy",
            "allowNamedServers", "namedServerLimitPerUser", "baseUrl", "cookieSecret", "templatePaths",
            "templateVars", "nodeSelector", "tolerations"},
    "singleuser": {"image", "uid", "fsGid", "cmd", "defaultUrl", "startTimeout", "cpu", "memory",
                   "extraResource", "storage", "extraEnv", "extraFiles", "networkPolicy", "lifecycleHooks",
                   "initContainers", "extraContainers", "extraPodConfig", "nodeSelector", "extraTolerations",
                   "profileList", "cloudMetadata", "allowPrivilegeEscalation", "serviceAccountName",
                   "extraLabels", "extraAnnotations", "events", "networkTools", "podNameTemplate",
                   "extraNodeAffinity", "extraPodAffinity", "extraPodAntiAffinity"},
    "singleuser.image": {"name", "tag", "pullPolicy", "pullSecrets"},
    "singleuser.cpu": {"limit", "guarantee"},
    "singleuser.memory": {"limit", "guarantee"},
    "singleuser.extraResource": {"limits", "guarantees"},
    "singleuser.storage": {"type", "capacity", "homeMountPath", "dynamic", "static", "extraLabels",
                           "extraVolumes", "extraVolumeMounts"},
    "singleuser.networkPolicy": {"enabled", "ingress", "egress", "egressAllowRules",
                                 "interNamespaceAccessLabels", "allowedIngressPorts"},
    "singleuser.networkPolicy.egressAllowRules": {"cloudMetadataServer", "dnsPortsCloudMetadataServer",
                                                  "dnsPortsKubeSystemNamespace", "dnsPortsPrivateIPs",
                                                  "nonPrivateIPs", "privateIPs"},
    "cull": {"enabled", "users", "adminUsers", "removeNamedServers", "timeout", "every", "concurrency", "maxAge"},
    "prePuller": {"hook", "continuous", "extraImages", "pullProfileListImages", "resources",
                  "extraTolerations", "labels", "annotations", "containerSecurityContext", "pause",
                  "revisionHistoryLimit"},
}


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load(VALUES.read_text())


def kube_bytes(spec) -> int:
    """KubeSpawner's reading of singleuser.memory (JupyterHub's ByteSpecification):
    an int is bytes; K, M, G, T are powers of 1024."""
    if isinstance(spec, (int, float)):
        return int(spec)
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    assert isinstance(spec, str) and spec[-1:] in units, f"not a KubeSpawner memory size: {spec!r}"
    return int(float(spec[:-1]) * units[spec[-1]])


def qemu_bytes(spec: str) -> int:
    """QEMU's reading of -m (a bare number is MiB; suffixes are powers of 1024)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", str(spec))
    assert m, f"not a QEMU memory size: {spec!r}"
    return int(float(m.group(1)) * 1024 ** ("KMGT".index(m.group(2) or "M") + 1))


def lab_default(name):
    return inspect.signature(Lab).parameters[name].default


def test_memory_per_student_covers_the_vm(values):
    vm = qemu_bytes(lab_default("memory"))
    mem = values["singleuser"]["memory"]
    limit, guarantee = kube_bytes(mem["limit"]), kube_bytes(mem["guarantee"])
    assert limit >= vm + MARGIN, (
        f"singleuser.memory.limit {mem['limit']} leaves less than {MARGIN / GiB:.1f} GiB beside "
        f"the {lab_default('memory')} guest: the pod would be OOM-killed under a full guest")
    # The scheduler reserves the guarantee: at least the guest, or nodes are overpacked.
    assert vm < guarantee <= limit


def test_cpu_per_student_fits_the_vm(values):
    cpu = values["singleuser"]["cpu"]
    # The VM's vCPUs are host threads under TCG: a lower limit throttles every boot.
    assert cpu["limit"] >= lab_default("cpus")
    assert 0 < cpu["guarantee"] <= cpu["limit"]


def test_culler_on_and_spawns_capped(values):
    cull = values["cull"]
    assert cull["enabled"] is True
    assert 0 < cull["every"] < cull["timeout"]
    assert values["hub"]["concurrentSpawnLimit"] > 0
    kernels = values["singleuser"]["extraFiles"]["jupyter_server_config.json"]["data"]["MappingKernelManager"]
    assert kernels["cull_idle_timeout"] > 0  # an idle kernel's VM goes, so the server can go idle


def test_values_use_only_chart_keys(values):
    for where, allowed in SCHEMA_KEYS.items():
        node = values
        for part in filter(None, where.split(".")):
            node = node.get(part, {})
        unknown = set(node) - allowed
        assert not unknown, f"{where or 'top level'}: keys z2jh does not know: {sorted(unknown)}"
    assert values["singleuser"]["storage"]["type"] in ("dynamic", "static", "none")


def test_env_names_are_read_by_labkit(values):
    sources = "".join(p.read_text() for p in (paths.PROJECT / "labkit").rglob("*.py"))
    env = values["singleuser"]["extraEnv"]
    for name in env:
        assert f'"{name}"' in sources, f"labkit reads no {name}"
    assert env["LABKIT_MODE"] in ("live", "replay")
    assert env["LABKIT_ACCEL"] in ("tcg", "kvm")


def test_one_vm_per_pod(values):
    """The memory limit covers one VM, so the pod runs at most one at a time: its own slot broker, 1 running."""
    from labkit.vm import slots

    path = slots.config(values["singleuser"]["extraEnv"][slots.ENV])
    entry = (DEPLOY / "image" / "start-lab").read_text()
    assert f'labkit.vm.slotbroker "${slots.ENV}" 1 1' in entry and path  # the entry point runs the pod's broker


def containerfile_instructions():
    """(instruction, arguments) per line of the Containerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_containerfile_copies_files_that_exist():
    instructions = containerfile_instructions()
    args = dict(a.split("=", 1) for w, a in instructions if w == "ARG" and "=" in a)
    copies = [shlex.split(a) for w, a in instructions if w == "COPY"]
    assert copies
    for *sources, _dest in copies:
        for src in sources:
            if src.startswith("--"):
                continue
            if src.startswith("${"):  # the kernel artifact: made by labkit kernel export, never committed
                artifact = args[src.strip("${}")]
                assert artifact.startswith("deploy/image/lab-kernel.")
                assert "lab-kernel.*" in (DEPLOY / "image" / ".gitignore").read_text().split()
                continue
            assert (paths.PROJECT / src).exists(), f"Containerfile copies {src}, which is not in the repository"


def test_containerfile_runs_the_machine_setup():
    instructions = containerfile_instructions()
    runs = " ".join(a for w, a in instructions if w == "RUN")
    assert "./lab setup" in runs
    assert "setup)" in (paths.PROJECT / "lab").read_text()
    assert "kernel import" in runs  # the prebuilt kernel, so the set-up builds none
    assert runs.index("kernel import") < runs.index("./lab setup")
    entry = [a for w, a in instructions if w == "ENTRYPOINT"]
    assert entry and "start-lab" in entry[-1]
    users = [a for w, a in instructions if w == "USER"]
    assert users and users[-1] not in ("0", "root")
