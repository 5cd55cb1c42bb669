"""ec2lab: the project's EC2/EBS emulator, with a real data plane (loop devices), for the EBS driver's tests.

One process serves the EC2 Query API (as boto3 speaks it, any SigV4 signature accepted) and an admin API
(`/_lab/...`, see admin.py) on one port, and an IMDSv2 endpoint per emulated instance on its own port.
Every volume is a sparse file under the state dir; attaching it to an instance (all instances are this
machine) makes a loop device and the link the real cloud's udev would make:
  nitro: DEV_ROOT/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id without dash> -> /dev/loopN
  xen:   DEV_ROOT/xvdf for a requested /dev/sdf -> /dev/loopN
DEV_ROOT is a setting (`--dev-root`, default /dev; the pytest fixture uses a private directory so parallel runs
never collide). The emulator never replaces a path it did not make: it records every link it makes in its
state, and refuses an attach whose link path already exists and is not its own.

Modules: api.py (the actions), model.py (state + persistence), validation.py (AWS's volume rules),
dataplane.py (files, loop devices, links), xmlout.py (responses), imds.py, admin.py (+ AdminClient),
server.py (the Lab: servers and the ticker that moves states), fixture.py (pytest), __main__.py (CLI).
"""
