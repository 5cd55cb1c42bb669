"""python -m tests.dolab --state DIR --port P --droplet ID=METADATA_PORT[:off] ...: run the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tests.dolab.config import DEFAULT_DELAYS, TOKEN, Settings
from tests.dolab.server import Lab
from tests.labs.serving import serve_until_signalled


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.dolab", description="DigitalOcean API emulator")
    parser.add_argument("--state", type=Path, required=True, help="state dir: state.json, volume and snapshot files")
    parser.add_argument("--port", type=int, default=0, help="DO API + /_lab admin port on 127.0.0.1 (0: any free)")
    parser.add_argument(
        "--droplet",
        action="append",
        default=[],
        metavar="ID=METADATA_PORT[:off]",
        help="a droplet of this host and its metadata service's port (repeatable); ':off' starts it powered off",
    )
    parser.add_argument("--region", default="nyc3", help="the droplets' region (default nyc3)")
    parser.add_argument("--dev-root", type=Path, default=Path("/dev"), help="where device links are made (default /dev)")
    for name, seconds in DEFAULT_DELAYS.items():
        parser.add_argument(f"--{name}-delay", type=float, default=seconds, help=f"seconds (default {seconds})")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s dolab %(message)s")
    droplets = []
    for spec in args.droplet:
        droplet_id, _, rest = spec.partition("=")
        port, _, status = rest.partition(":")
        if not droplet_id.isdigit() or not port.isdigit() or status not in ("", "off"):
            print(f"--droplet {spec}: expected ID=METADATA_PORT[:off], e.g. 1001=9101", file=sys.stderr)
            return 2
        droplets.append((int(droplet_id), int(port), "off" if status else "active"))
    delays = {name: getattr(args, f"{name}_delay") for name in DEFAULT_DELAYS}
    lab = Lab(args.state, args.port, Settings(region=args.region, dev_root=args.dev_root, delays=delays))
    try:
        lab.start(droplets)
    except (ValueError, OSError) as e:
        print(f"dolab: cannot start: {e}", file=sys.stderr)
        return 2
    print(f"dolab: DO API http://127.0.0.1:{lab.port}/v2/ (admin /_lab/), token {TOKEN}", flush=True)
    print(f"dolab: state {args.state}, links under {args.dev_root}/disk/by-id", flush=True)
    with lab.store.lock:
        for d in lab.store.state.droplets.values():
            print(f"dolab: droplet {d.id} ({d.region}, {d.status}) metadata http://127.0.0.1:{d.metadata_port}", flush=True)
    return serve_until_signalled(lab.stop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
