"""dolab: the project's DigitalOcean API emulator, with a real data plane (loop devices), for the DigitalOcean driver.

One process serves the DO API v2 endpoints the driver uses (Bearer token, DO's JSON errors, pagination, rate-limit
headers, volume actions that go in-progress -> completed) and an admin API (`/_lab/...`, see admin.py) on one port,
and a droplet metadata service per emulated droplet on its own port. Every volume is a sparse file under the state
dir; an attach to a droplet of this host makes a loop device and DEV_ROOT/disk/by-id/scsi-0DO_Volume_<name>, as a
droplet's udev would. DEV_ROOT is `--dev-root` (default /dev; the pytest fixture uses a private directory). The
emulator never replaces a path it did not make (see tests/labs/dataplane.py).

Modules: api.py (the endpoints), tags.py (the tag endpoints and DO's tag rules), render.py (DO's JSON), model.py
(state + persistence), ticker.py (actions complete, data plane), dataplane.py (DO's link names; the rest is
tests/labs), metadata.py, admin.py (+ AdminClient), config.py (settings, faults, rate limit), server.py (the Lab),
fixture.py (pytest), __main__.py (CLI).
"""
