#!/bin/bash
# Make a Debian base image for the plugin's rootfs without any image registry:
# debootstrap a minimal Debian (with python3 and plugin/packages.txt) and
# `docker import` it.
#
#   ci/make-base-image.sh [TAG]      default TAG: convoy-base:bookworm
#
# Environment: SUITE (bookworm), MIRROR (http://deb.debian.org/debian),
# DOCKER (docker). Takes about a minute; does nothing when TAG already exists.
set -euo pipefail
TAG=${1:-convoy-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DOCKER=${DOCKER:-docker}
here=$(cd "$(dirname "$0")" && pwd)
# python3: the daemon's interpreter; plugin/packages.txt: the host tools of the back-ends.
include=$(sed -e 's/#.*//' "$here/../plugin/packages.txt" | xargs | tr ' ' ,)
include=python3${include:+,$include}
if $DOCKER image inspect "$TAG" >/dev/null 2>&1; then exit 0; fi
command -v debootstrap >/dev/null || { echo "debootstrap not found: run ci/install-deps.sh" >&2; exit 1; }
dir=$(mktemp -d /var/tmp/convoy-base.XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "ci/make-base-image: debootstrap $SUITE into $dir (about a minute)" >&2
# A second try after a failure: a dropped connection to the mirror should not fail CI.
for attempt in 1 2; do
  if debootstrap --variant=minbase --include="$include" "$SUITE" "$dir/root" "$MIRROR" >"$dir/debootstrap.log" 2>&1; then
    break
  fi
  tail -n 30 "$dir/debootstrap.log" >&2
  [ "$attempt" = 2 ] && { echo "ci/make-base-image: debootstrap failed twice" >&2; exit 1; }
  echo "ci/make-base-image: debootstrap failed; trying again" >&2
  rm -rf "$dir/root"; sleep 5
done
# Trim what a plugin never uses: package caches, docs, man pages, locales.
rm -rf "$dir"/root/var/cache/apt/archives/*.deb "$dir"/root/var/lib/apt/lists/* \
       "$dir"/root/usr/share/doc/* "$dir"/root/usr/share/man/* "$dir"/root/usr/share/info/* \
       "$dir"/root/usr/share/locale/*
tar -C "$dir/root" -c . | $DOCKER import -c 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "ci/make-base-image: made $TAG" >&2
