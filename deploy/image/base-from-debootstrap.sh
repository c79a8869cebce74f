#!/usr/bin/env bash
# A Debian 12 base image made from the apt mirror, for machines that reach
# apt but no container registry (so `FROM debian:bookworm` cannot be pulled).
#
#   sudo deploy/image/base-from-debootstrap.sh [IMAGE]     (default localhost/debian:bookworm)
#   podman build --build-arg BASE_IMAGE=localhost/debian:bookworm ...
#
# debootstrap's minbase variant (apt, dpkg, bash, coreutils: about 200 MB),
# with the same suites as Debian's own image (bookworm, -updates, -security)
# from this machine's mirror, imported with `podman import`. Needs root,
# debootstrap and podman; the rootfs is made in a temporary directory and
# removed afterwards, whatever happens.
set -euo pipefail

IMAGE=${1:-localhost/debian:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

[ "$(id -u)" -eq 0 ] || { echo "base-from-debootstrap: run as root (debootstrap needs it)" >&2; exit 2; }
for tool in debootstrap podman; do
    command -v "$tool" >/dev/null || { echo "base-from-debootstrap: $tool missing: apt-get install $tool" >&2; exit 2; }
done

root=$(mktemp -d /var/tmp/labkit-rootfs.XXXXXX)
trap 'rm -rf --one-file-system "$root"' EXIT

debootstrap --variant=minbase bookworm "$root" "$MIRROR" >&2
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar --numeric-owner -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$IMAGE"
echo "$IMAGE"
