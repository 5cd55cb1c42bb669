# Managed-plugin targets, included by the top-level Makefile.
#
#   make plugin   build plugin/build/bundle (config.json + rootfs) and
#                 `docker plugin create $(PLUGIN_NAME):$(PLUGIN_TAG)` from it
#   make install  make plugin, then configure and enable it
#                 (docker plugin enable --timeout 120: the 30 s default also caps
#                 every later call to the plugin while that enable is in force)
#   make install-bundle  the same from the bundle an earlier `make plugin` built, without
#                 building it again (a second engine on the same machine)
#   make uninstall  disable and remove the plugin (volumes and data stay in PLUGIN_STATE)
#   make e2e      only the end-to-end tests (own dockerd, plugin built and installed; root)
#   make bench-plugin  volume lifecycle benchmark, convoy vs local (own dockerd; root)
#
# Settable: NAME/PLUGIN_NAME (convoy), TAG/PLUGIN_TAG (latest), BASE (base image
# of the rootfs; when it can't be pulled one is made offline with debootstrap),
# PLUGIN_STATE (host dir for catalog + VFS data, /var/lib/convoy), PLUGIN_CONTROL
# (host dir for the control socket, /run/convoy), PLUGIN_SETTINGS (extra
# `docker plugin set` arguments, e.g. 'DRIVER=vfs DEFAULT_SIZE=10G'), DOCKER.
NAME ?= convoy
TAG ?= latest
PLUGIN_NAME ?= $(NAME)
PLUGIN_TAG ?= $(TAG)
PLUGIN_REF := $(PLUGIN_NAME):$(PLUGIN_TAG)
BASE ?= python:3.11-slim-bookworm
DOCKER ?= docker
PLUGIN_STATE ?= /var/lib/convoy
PLUGIN_CONTROL ?= /run/convoy
PLUGIN_SETTINGS ?=

.PHONY: plugin install install-bundle enable-plugin uninstall e2e bench-plugin
plugin:
	BASE='$(BASE)' DOCKER='$(DOCKER)' plugin/build.sh
	DOCKER='$(DOCKER)' plugin/create.sh '$(PLUGIN_REF)' plugin/build/bundle

install: plugin enable-plugin

install-bundle:
	test -f plugin/build/bundle/config.json || { echo "no plugin/build/bundle: run make plugin first" >&2; exit 1; }
	DOCKER='$(DOCKER)' plugin/create.sh '$(PLUGIN_REF)' plugin/build/bundle
	$(MAKE) --no-print-directory enable-plugin

enable-plugin:
	mkdir -p '$(PLUGIN_STATE)' '$(PLUGIN_CONTROL)'
	$(DOCKER) plugin set '$(PLUGIN_REF)' state.source='$(PLUGIN_STATE)' control.source='$(PLUGIN_CONTROL)' $(PLUGIN_SETTINGS)
	$(DOCKER) plugin enable --timeout 120 '$(PLUGIN_REF)'
	@echo "installed $(PLUGIN_REF); host CLI: CONVOY_SOCKET=$(PLUGIN_CONTROL)/convoy.sock convoy list"

uninstall:
	-$(DOCKER) plugin disable -f '$(PLUGIN_REF)'
	$(DOCKER) plugin rm -f '$(PLUGIN_REF)'

e2e: setup
	.venv/bin/python -m pytest tests/e2e

bench-plugin: setup
	.venv/bin/python benchmarks/volume_lifecycle.py --setup
