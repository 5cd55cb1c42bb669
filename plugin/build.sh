#!/bin/bash
# Build the Convoy managed-plugin bundle: plugin/build/bundle/{config.json,rootfs/}
#
#   plugin/build.sh            (make plugin runs it, then docker plugin create)
#
# Environment:
#   BASE           base image for the rootfs (default python:3.11-slim-bookworm).
#                  When it is neither present nor pullable, a Debian base is made
#                  offline with debootstrap + docker import (ci/make-base-image.sh)
#                  and tagged $FALLBACK_BASE (default convoy-base:bookworm-HASH, HASH
#                  of plugin/packages.txt: a base made before the list changed is not reused).
#   PYTHON         host Python with pip, used to make the wheelhouse (default:
#                  .venv/bin/python if present, else python3)
#   DOCKER         docker CLI (default docker; honours DOCKER_HOST)
#   BUILD_DIR      output directory (default plugin/build)
#   BOTOCORE_SERVICES  botocore API models kept in the rootfs (default "s3 ec2 ebs sts":
#                  S3 backups, EBS volumes and snapshots, EBS direct APIs); the other ~400 are dropped
#                  to keep the bundle small. "all" keeps every one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
DOCKER=${DOCKER:-docker}
BASE=${BASE:-python:3.11-slim-bookworm}
# Debian packages the rootfs needs besides python3 (plugin/packages.txt, comments dropped).
packages=$(sed -e 's/#.*//' "$here/packages.txt" | xargs)
FALLBACK_BASE=${FALLBACK_BASE:-convoy-base:bookworm-$(echo "$packages" | sha256sum | cut -c1-8)}
BUILD_DIR=${BUILD_DIR:-$here/build}
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
log() { echo "plugin/build: $*" >&2; }

# 1. A base image: present, pulled, or made offline.
if ! $DOCKER image inspect "$BASE" >/dev/null 2>&1; then
  log "pulling $BASE"
  if ! timeout 120 $DOCKER pull -q "$BASE" >/dev/null 2>&1; then
    if $DOCKER image inspect "$FALLBACK_BASE" >/dev/null 2>&1; then
      log "cannot pull $BASE (no registry reachable?); using $FALLBACK_BASE made earlier with debootstrap"
    else
      log "cannot pull $BASE (no registry reachable?); making $FALLBACK_BASE with debootstrap"
      DOCKER=$DOCKER "$root/ci/make-base-image.sh" "$FALLBACK_BASE"
    fi
    BASE=$FALLBACK_BASE
  fi
fi
pyver=$($DOCKER run --rm --network none --entrypoint python3 "$BASE" \
  -c 'import sys; print("%d.%d" % sys.version_info[:2])')
log "base $BASE has Python $pyver"

# 2. The wheelhouse, made on the host for the base image's Python and platform.
ctx=$BUILD_DIR/context
rm -rf "$ctx"; mkdir -p "$ctx/wheels"
cp "$here/Dockerfile" "$here/entrypoint" "$ctx/"
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w "$ctx/wheels" "$root" >/dev/null
arch=$(uname -m)
plats=()
for p in manylinux2014 manylinux_2_17 manylinux_2_28 manylinux_2_34 manylinux_2_35 manylinux_2_36; do
  plats+=(--platform "${p}_${arch}")
done
"$PYTHON" -m pip download -q --disable-pip-version-check -d "$ctx/wheels" \
  --only-binary=:all: --implementation cp --python-version "$pyver" "${plats[@]}" \
  "$ctx"/wheels/convoy_py-*.whl pip >/dev/null
log "wheelhouse: $(ls "$ctx/wheels" | wc -l) wheels, $(du -sh "$ctx/wheels" | cut -f1)"

# 3. The rootfs: build the image, export a container's file system.
img=convoy-plugin-rootfs:build
DOCKER_BUILDKIT=0 $DOCKER build -q --build-arg "BASE=$BASE" --build-arg "PACKAGES=$packages" -t "$img" "$ctx" >/dev/null
bundle=$BUILD_DIR/bundle
rm -rf "$bundle"; mkdir -p "$bundle/rootfs"
cid=$($DOCKER create "$img")
trap '$DOCKER rm -f "$cid" >/dev/null 2>&1 || true' EXIT
$DOCKER export "$cid" | tar -C "$bundle/rootfs" -x
cp "$here/config.json" "$bundle/config.json"

# 4. Trim what the plugin never loads: debug symbols of the wheels' extension
#    modules (zstandard ships ~24 MB of them) and botocore's models of AWS
#    services that no back-end calls.
site=$(echo "$bundle"/rootfs/opt/convoy/lib/python3*/site-packages)
if command -v strip >/dev/null; then
  find "$site" -name '*.so' -type f -exec strip --strip-unneeded {} +
else
  log "strip not found (binutils): extension modules keep their debug symbols"
fi
keep=${BOTOCORE_SERVICES:-s3 ec2 ebs sts}
if [ "$keep" != all ] && [ -d "$site/botocore/data" ]; then
  for d in "$site"/botocore/data/*/; do
    svc=$(basename "$d")
    case " $keep " in *" $svc "*) ;; *) rm -rf "$d" ;; esac
  done
fi
log "bundle $bundle: $(du -sh "$bundle" | cut -f1) ($(tar -C "$bundle" -c . | gzip -1 | wc -c | awk '{printf "%.0f MB", $1/1e6}') gzipped)"
