# The two commands for a fresh machine (see README.md):
#   make run    set up, then run the daemon on its default VFS back-end
#   make test   set up, then lint (ruff, mypy --strict on app/) and run every test
.PHONY: setup run test

setup:
	bash ci/setup.sh

run: setup
	.venv/bin/convoy daemon

test: setup
	bash ci/lint.sh
	.venv/bin/python -m pytest

# Managed plugin: make plugin, make install, make uninstall (see plugin/README.md)
include plugin/plugin.mk
