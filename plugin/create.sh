#!/bin/bash
# docker plugin create REF BUNDLE, replacing a disabled plugin of the same name.
set -euo pipefail
ref=$1; bundle=$2
DOCKER=${DOCKER:-docker}
if enabled=$($DOCKER plugin inspect -f '{{.Enabled}}' "$ref" 2>/dev/null); then
  if [ "$enabled" = true ]; then
    echo "plugin $ref exists and is enabled: 'docker plugin disable $ref' first (or use TAG=...)," >&2
    echo "or 'docker plugin upgrade' it; its volumes and data are kept either way" >&2
    exit 1
  fi
  echo "plugin/create: replacing disabled plugin $ref" >&2
  $DOCKER plugin rm -f "$ref" >/dev/null
fi
$DOCKER plugin create "$ref" "$bundle" >/dev/null
echo "plugin/create: created $ref from $bundle ($(du -sh "$bundle" | cut -f1))" >&2
