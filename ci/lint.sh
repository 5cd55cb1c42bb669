#!/bin/bash
# The quality gate: ruff on the code and its tests, mypy (strict) on app/.
# Uses the tools of .venv (ci/setup.sh installs them with the test extra).
# Configuration: [tool.ruff] and [tool.mypy] in pyproject.toml.
set -uo pipefail
cd "$(dirname "$0")/.."

rc=0
.venv/bin/ruff check app tests benchmarks || rc=1
.venv/bin/mypy app || rc=1
exit $rc
