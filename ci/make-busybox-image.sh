#!/bin/bash
# Make a tiny test image from Debian's busybox-static, without any registry:
# a folder with bin/busybox and relative symlinks for its applets, imported.
#
#   ci/make-busybox-image.sh [TAG]     default TAG: convoy-test-busybox:latest
set -euo pipefail
TAG=${1:-convoy-test-busybox:latest}
DOCKER=${DOCKER:-docker}
if $DOCKER image inspect "$TAG" >/dev/null 2>&1; then exit 0; fi
BB=/bin/busybox
[ -x "$BB" ] || { echo "$BB not found: run ci/install-deps.sh (busybox-static)" >&2; exit 1; }
file "$BB" 2>/dev/null | grep -q dynamic && echo "warning: $BB is dynamic; install busybox-static" >&2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"/{bin,tmp,data,etc,proc,sys,dev}
cp "$BB" "$dir/bin/busybox"
for a in $("$BB" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$dir/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/etc/passwd"
echo 'root:x:0:' > "$dir/etc/group"
tar -C "$dir" -c . | $DOCKER import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$TAG" >/dev/null
