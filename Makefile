# The two commands for a fresh machine (see README.md):
#   make run    set up, then run the daemon on its default VFS back-end
#   make test   set up, then lint (ruff, mypy --strict on app/) and run every test
#   make ebs-lab  the EC2/EBS emulator in the foreground, for trying DRIVER=ebs by hand (root; Ctrl-C stops it)
#   make do-lab   the DigitalOcean emulator in the foreground, for trying DRIVER=digitalocean by hand (root; Ctrl-C stops it)
#   make guest-test   the tests that need a guest kernel (device-mapper, kernel NFS) in one QEMU boot (root; tests/guest/README.md)
#   make guest-shell  a root shell in that guest, on this terminal
.PHONY: setup run test ebs-lab do-lab guest-test guest-shell

setup:
	bash ci/setup.sh

run: setup
	.venv/bin/convoy daemon

test: setup
	bash ci/lint.sh
	.venv/bin/python -m pytest

# EC2/EBS emulator (tests/ec2lab/README.md): the EC2 API and its /_lab admin API on EBS_LAB_PORT, one IMDS
# port per instance, volume files in EBS_LAB_STATE, device links under EBS_LAB_DEV_ROOT. Point the daemon at it
# with ebs.endpoint=http://127.0.0.1:$(EBS_LAB_PORT) and AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:8788/.
EBS_LAB_STATE ?= /var/lib/convoy-ebs-lab
EBS_LAB_PORT ?= 8787
EBS_LAB_INSTANCES ?= i-0a000000000000001=8788 i-0b000000000000002=8789
EBS_LAB_DEV_ROOT ?= /dev

ebs-lab: setup
	.venv/bin/python -m tests.ec2lab --state $(EBS_LAB_STATE) --port $(EBS_LAB_PORT) \
		$(foreach i,$(EBS_LAB_INSTANCES),--imds $(i)) --dev-root $(EBS_LAB_DEV_ROOT)

# DigitalOcean emulator (tests/dolab/README.md): the DO API (/v2/) and its /_lab admin API on DO_LAB_PORT, one
# droplet metadata service per droplet (ID=PORT), volume links under DO_LAB_DEV_ROOT/disk/by-id.
DO_LAB_STATE ?= /var/lib/convoy-do-lab
DO_LAB_PORT ?= 8797
DO_LAB_DROPLETS ?= 1001=8798 1002=8799
DO_LAB_REGION ?= nyc3
DO_LAB_DEV_ROOT ?= /dev

do-lab: setup
	.venv/bin/python -m tests.dolab --state $(DO_LAB_STATE) --port $(DO_LAB_PORT) --region $(DO_LAB_REGION) \
		$(foreach d,$(DO_LAB_DROPLETS),--droplet $(d)) --dev-root $(DO_LAB_DEV_ROOT)

# Guest kernel (tests/guest/README.md): builds the cached image the first time (~4 min), then boots it (~40 s)
# and runs pytest inside on tests/guest/inside, or on GUEST_ARGS (pytest's arguments: paths, -k, -x...).
GUEST_ARGS ?=

guest-test: setup
	.venv/bin/python -m tests.guest run $(GUEST_ARGS)

guest-shell: setup
	.venv/bin/python -m tests.guest shell

# Managed plugin: make plugin, make install, make uninstall (see plugin/README.md)
include plugin/plugin.mk
