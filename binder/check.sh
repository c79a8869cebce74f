#!/usr/bin/env bash
# binder/check.sh: does binder/ give a Binder image in which the lessons replay?
#
#   sudo BUILD_CA=/etc/ssl/certs/ca-certificates.crt binder/check.sh [CHECKOUT] [LESSON...]
#
# What it checks. mybinder builds this repository with repo2docker from
# binder/ (apt.txt, requirements.txt, postBuild, start). This script builds an
# image that follows repo2docker 2026.4.0's generated Dockerfile step for step
# (same order, same users, same commands): locales; the jovyan user (uid
# 1000); the base env; binder/apt.txt with `apt-get install
# --no-install-recommends` as root; binder/requirements.txt with `pip install
# --no-cache-dir -r` as jovyan before the repository is copied; the whole
# repository copied to /home/jovyan owned by 1000; binder/postBuild run as
# jovyan from the repository root; binder/start as the wrapper of every
# command (R2D_ENTRYPOINT). It then runs the lessons (default: lesson 01) in
# replay with labkit's nbclient runner (labkit.course.nbrun), as jovyan, with no network and 2 GB
# (mybinder's limit), through binder/start, and fails on any error output.
# It also checks what repo2docker would pick but this image cannot reproduce:
# the Python version (binder/runtime.txt, else repo2docker's default 3.10,
# pyproject's requires-python being ignored when binder/ exists) against the
# Requires-Python of labkit and of every package binder/requirements.txt names.
#
# Why not repo2docker itself. On a machine that reaches only the Debian
# mirror, PyPI and npm, `repo2docker` (2026.4.0, with DOCKER_HOST pointing at
# podman's socket) cannot build: (1) it probes `podman buildx version`, which
# podman 4.3.1 (Debian 12) lacks; (2) its base image
# docker.io/library/buildpack-deps:24.04 cannot be pulled; (3) with a local
# stand-in for it, its Python buildpack downloads micromamba from anaconda.org
# and the whole base env (Python, Jupyter) from conda.anaconda.org, which are
# unreachable (`wget: unable to resolve host address 'anaconda.org'`). So the
# base env here is Debian 12's python3 (3.11) in a venv at repo2docker's path
# (/srv/conda/envs/notebook), with the Jupyter packages at the versions of
# repo2docker 2026.4.0's python-3.11 conda lock, from PyPI. Where mybinder has
# internet this is not needed; use repo2docker there.
#
# Needs root, podman and runc (apt-get install podman runc debootstrap); the
# base image localhost/debian:bookworm is made with
# deploy/image/base-from-debootstrap.sh when missing. BUILD_CA: a CA bundle
# for pip behind a TLS-intercepting proxy, mounted at build time only (not in
# the image). KEEP_IMAGE=1 keeps the image (tag binder-check:latest).
# Builds the committed HEAD of CHECKOUT (a git clone), as mybinder builds a ref.
set -euo pipefail

CHECKOUT=$(cd "${1:-.}" && pwd); shift || true
LESSONS=("$@")
BASE_IMAGE=${BASE_IMAGE:-localhost/debian:bookworm}
IMAGE=${IMAGE:-binder-check:latest}
R2D_DEFAULT_PYTHON=3.10   # repo2docker 2026.4.0: CondaBuildPack.major_pythons["3"]
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)   # see deploy/README.md, "What was checked here"

[ "$(id -u)" -eq 0 ] || { echo "binder-check: run as root (podman, debootstrap)" >&2; exit 2; }
for t in podman runc git python3; do command -v "$t" >/dev/null || { echo "binder-check: $t missing" >&2; exit 2; }; done

work=$(mktemp -d /var/tmp/binder-check.XXXXXX)
cleanup() { rm -rf --one-file-system "$work"; [ -n "${KEEP_IMAGE:-}" ] || podman rmi -f "$IMAGE" >/dev/null 2>&1 || true; }
trap cleanup EXIT

git clone -q "$CHECKOUT" "$work/ctx/src"   # the build context: src/ (the repository), Containerfile, entrypoint
cd "$work/ctx"
[ -d src/binder ] || { echo "binder-check: no binder/ in $CHECKOUT" >&2; exit 2; }
echo "binder-check: $(git -C src log -1 --format='%h %s' | cut -c1-90)"

if ! podman image exists "$BASE_IMAGE"; then
    echo "binder-check: making $BASE_IMAGE (debootstrap)"
    bash "$CHECKOUT/deploy/image/base-from-debootstrap.sh" "$BASE_IMAGE" >/dev/null
fi

# The Python repo2docker would build with: binder/runtime.txt "python-X.Y", else its default.
r2d_python=$R2D_DEFAULT_PYTHON
if [ -f src/binder/runtime.txt ]; then
    rt=$(tr -d '[:space:]' < src/binder/runtime.txt)
    [[ $rt =~ ^python-([0-9]+\.[0-9]+) ]] && r2d_python=${BASH_REMATCH[1]}
fi
echo "binder-check: repo2docker would use Python $r2d_python ($( [ -f src/binder/runtime.txt ] && echo binder/runtime.txt || echo 'its default: no binder/runtime.txt'))"

# repo2docker's entrypoint runs R2D_ENTRYPOINT (binder/start) in front of every command.
cat > entrypoint <<'EOF'
#!/bin/bash
[ -n "${R2D_ENTRYPOINT:-}" ] && set -- "$R2D_ENTRYPOINT" "$@"
exec "$@"
EOF

apt_pkgs=""
[ -f src/binder/apt.txt ] && apt_pkgs=$(sed -e 's/#.*//' src/binder/apt.txt | xargs -r | tr ' ' '\n' | sort | xargs -r)

{
cat <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get -qq update && \
    apt-get -qq install --yes --no-install-recommends locales > /dev/null && \
    apt-get -qq clean && rm -rf /var/lib/apt/lists/*
RUN echo "en_US.UTF-8 UTF-8" > /etc/locale.gen && locale-gen
ENV LC_ALL=en_US.UTF-8 LANG=en_US.UTF-8 LANGUAGE=en_US.UTF-8 SHELL=/bin/bash
ARG NB_USER=jovyan
ARG NB_UID=1000
ENV USER=${NB_USER} HOME=/home/${NB_USER}
RUN groupadd --gid ${NB_UID} ${NB_USER} && \
    useradd --comment "Default user" --create-home --gid ${NB_UID} --no-log-init --shell /bin/bash --uid ${NB_UID} ${NB_USER}
RUN apt-get -qq update && \
    apt-get -qq install --yes --no-install-recommends gettext-base less unzip > /dev/null && \
    apt-get -qq clean && rm -rf /var/lib/apt/lists/*
EXPOSE 8888
ENV APP_BASE=/srv CONDA_DIR=/srv/conda NB_PYTHON_PREFIX=/srv/conda/envs/notebook KERNEL_PYTHON_PREFIX=/srv/conda/envs/notebook
ENV PATH=${NB_PYTHON_PREFIX}/bin:${PATH}
# Stand-in for repo2docker's install-base-env.bash (conda-forge is unreachable here):
# Debian's python3 in a venv, the Jupyter packages at repo2docker 2026.4.0's python-3.11 lock versions.
RUN apt-get -qq update && \
    apt-get -qq install --yes --no-install-recommends python3 python3-venv ca-certificates > /dev/null && \
    apt-get -qq clean && rm -rf /var/lib/apt/lists/* && \
    python3 -m venv ${NB_PYTHON_PREFIX} && \
    ${NB_PYTHON_PREFIX}/bin/pip install -q --no-cache-dir pip==25.2 setuptools==80.9.0 && \
    ${NB_PYTHON_PREFIX}/bin/pip install -q --no-cache-dir jupyterlab==4.4.9 notebook==7.4.7 \
      ipywidgets==8.1.7 ipykernel==7.0.1 jupyter_server==2.17.0 jupyterhub==5.4.0 \
      jupyter-resource-usage==1.2.0 jupyter-offlinenotebook==0.3.2 nbclient==0.10.2 && \
    chown -R ${NB_USER}:${NB_USER} ${CONDA_DIR}
ARG REPO_DIR=${HOME}
ENV REPO_DIR=${REPO_DIR}
WORKDIR ${REPO_DIR}
RUN chown ${NB_USER}:${NB_USER} ${REPO_DIR}
ENV PATH=${HOME}/.local/bin:${REPO_DIR}/.local/bin:${PATH}
ENV CONDA_DEFAULT_ENV=${KERNEL_PYTHON_PREFIX}
EOF
[ -f src/binder/requirements.txt ] && echo 'COPY --chown=1000:1000 src/binder/requirements.txt ${REPO_DIR}/binder/requirements.txt'
[ -n "$apt_pkgs" ] && cat <<EOF
RUN apt-get -qq update && \\
    apt-get install --yes --no-install-recommends $apt_pkgs && \\
    apt-get -qq clean && rm -rf /var/lib/apt/lists/*
EOF
[ -f src/binder/requirements.txt ] && cat <<'EOF'
USER ${NB_USER}
RUN ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "binder/requirements.txt"
USER root
EOF
echo 'COPY --chown=1000:1000 src/ ${REPO_DIR}/'
echo 'USER ${NB_USER}'
[ -f src/binder/postBuild ] && printf '%s\n' 'RUN chmod +x binder/postBuild' 'RUN ./binder/postBuild'
[ -f src/binder/start ] && printf '%s\n' 'RUN chmod +x "${REPO_DIR}/binder/start"' 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"'
cat <<'EOF'
ENV PYTHONUNBUFFERED=1
COPY entrypoint /usr/local/bin/repo2docker-entrypoint
ENTRYPOINT ["/usr/local/bin/repo2docker-entrypoint"]
CMD ["jupyter", "notebook", "--ip", "0.0.0.0"]
EOF
} > Containerfile
chmod 0755 entrypoint

build_opts=()
if [ -n "${BUILD_CA:-}" ]; then   # pip behind a TLS-intercepting proxy: the CA at build time only
    printf '[global]\ncert = /run/build-ca.crt\n' > "$work/pip.conf"
    build_opts+=(-v "$BUILD_CA:/run/build-ca.crt:ro" -v "$work/pip.conf:/etc/pip.conf:ro")
fi

echo "binder-check: building $IMAGE from $BASE_IMAGE"
t0=$(date +%s)
if ! "${PODMAN[@]}" build "${LIMITS[@]}" "${build_opts[@]}" --build-arg BASE_IMAGE="$BASE_IMAGE" \
        -f Containerfile -t "$IMAGE" . > "$work/build.log" 2>&1; then
    tail -40 "$work/build.log"
    echo "binder-check: FAIL: the image did not build" >&2
    exit 1
fi
echo "binder-check: built in $(( $(date +%s) - t0 ))s, $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

run=("${PODMAN[@]}" run --rm "${LIMITS[@]}" --network none --memory 2g --memory-swap 2g "$IMAGE")
status=0

echo "binder-check: in the image (as $("${run[@]}" id -un), LABKIT_MODE=$("${run[@]}" printenv LABKIT_MODE || true)):"
"${run[@]}" bash -c 'python --version; jupyter lab --version | sed "s/^/jupyterlab /"; dot -V 2>&1;
    python -c "import labkit, sys; print(\"labkit from\", labkit.__file__)"; pip check 2>&1 | sed "s/^/pip check: /"' | sed 's/^/    /' || status=1

# The Python repo2docker would use, against what labkit and the pinned packages accept.
"${PODMAN[@]}" run --rm -i "${LIMITS[@]}" --network none "$IMAGE" python - "$r2d_python" <<'EOF' || status=1
import re, sys, importlib.metadata as md
from packaging.specifiers import SpecifierSet
py = sys.argv[1]
names = ["labkit"] + [re.split(r"[<>=!~;\[ ]", l.strip())[0] for l in open("binder/requirements.txt")
                      if l.strip() and not l.lstrip().startswith(("#", "-"))]
bad = [f"{n} (Requires-Python {md.metadata(n)['Requires-Python']})" for n in names
       if md.metadata(n).get("Requires-Python") and not SpecifierSet(md.metadata(n)["Requires-Python"]).contains(py)]
if bad:
    print(f"binder-check: FAIL: repo2docker would build with Python {py}, which these do not accept: " + ", ".join(bad))
    sys.exit(1)
print(f"binder-check: Python {py} is accepted by " + ", ".join(names))
EOF

runner=labkit.course.nbrun   # the notebook runner the tests use (nbclient)
[ ${#LESSONS[@]} -gt 0 ] || LESSONS=($(cd src && ls notebooks/01_*.ipynb))

echo "binder-check: python -m $runner --mode replay --json ${LESSONS[*]} (as jovyan, no network, 2 GB)"
t0=$(date +%s)
"${run[@]}" python -m "$runner" --mode replay --json "${LESSONS[@]}" > "$work/run.out" 2> "$work/run.err" || status=1
grep -v '^\[' "$work/run.out" | sed 's/^/    /'
cat > "$work/summary.py" <<'EOF'
import json, sys
try:
    rs = json.loads(open(sys.argv[1]).read().splitlines()[-1])
except (ValueError, IndexError):
    print("binder-check: FAIL: the runner gave no JSON summary")
    sys.exit(1)
for r in rs:
    checks = [(c.get("exercise"), c.get("passed")) for c in r["checks"]]
    print(f"    {r['notebook']}: {r['seconds']}s, {len(r['errors'])} errors, replay banner {r['replay_banner']}, "
          f"{len(r['reveals'])} reveals, checks {checks}")
    for e in r["errors"]:
        print(f"      cell {e['cell']}: {e['ename']}: {e['evalue']}")
        print(e["traceback"][-1500:])
sys.exit(1 if any(r["errors"] or not r["replay_banner"] for r in rs) else 0)
EOF
python3 "$work/summary.py" "$work/run.out" || status=1
grep -v "Kernel is running over TCP without encryption" "$work/run.err" > "$work/run.err2" || true
if [ -s "$work/run.err2" ]; then echo "    stderr:"; tail -20 "$work/run.err2" | sed 's/^/    /'; fi
echo "binder-check: lessons ran in $(( $(date +%s) - t0 ))s"

[ "$status" -eq 0 ] && echo "binder-check: PASS" || echo "binder-check: FAIL"
exit "$status"
