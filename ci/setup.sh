#!/bin/bash
# Make a fresh machine ready: Debian packages (ci/install-deps.sh and
# ci/apt-packages.txt) and a virtualenv in .venv with convoy and its test
# tools. Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  bash ci/install-deps.sh
  if [ -f ci/apt-packages.txt ]; then
    missing=()
    while read -r pkg; do
      [ -z "$pkg" ] || [ "${pkg#\#}" != "$pkg" ] && continue
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done < ci/apt-packages.txt
    if [ ${#missing[@]} -gt 0 ]; then
      echo "ci/setup: installing ${missing[*]}" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
      apt-get -q -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null
    fi
  fi
else
  echo "ci/setup: not root, skipping Debian packages (the daemon and most tests need root)" >&2
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
