#!/bin/bash
# Install the Debian packages the plugin build and the end-to-end tests need:
# Debian's Docker engine (dockerd, containerd, runc), debootstrap (to make a
# base image where none can be pulled), busybox-static (the test image) and
# iproute2 (the bridge of a second engine).
# Idempotent and quiet: installs only what is missing.
set -euo pipefail
PKGS=(docker.io debootstrap busybox-static ca-certificates iptables iproute2 make)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ci/install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
apt-get "${apt_opts[@]}" update >/dev/null
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
