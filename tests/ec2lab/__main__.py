"""python -m tests.ec2lab --state DIR --port P --imds INSTANCE_ID=PORT[:xen] ...: run the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tests.ec2lab.config import DEFAULT_DELAYS, Settings
from tests.ec2lab.server import Lab
from tests.labs.serving import serve_until_signalled


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.ec2lab", description="EC2/EBS emulator with a loop-device data plane")
    parser.add_argument("--state", type=Path, required=True, help="state dir: state.json, volume and snapshot files")
    parser.add_argument("--port", type=int, default=0, help="EC2 API + /_lab admin port on 127.0.0.1 (0: any free)")
    parser.add_argument(
        "--imds",
        action="append",
        default=[],
        metavar="INSTANCE_ID=PORT[:xen]",
        help="an emulated instance and its IMDS port (repeatable); ':xen' for xvd device names instead of NVMe by-id",
    )
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--az", default=None, help="the instances' availability zone (default REGIONa)")
    parser.add_argument("--dev-root", type=Path, default=Path("/dev"), help="where device links are made (default /dev)")
    for name, seconds in DEFAULT_DELAYS.items():
        parser.add_argument(f"--{name}-delay", type=float, default=seconds, help=f"seconds (default {seconds})")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s ec2lab %(message)s")
    delays = {name: getattr(args, f"{name}_delay") for name in DEFAULT_DELAYS}
    instances = []
    for spec in args.imds:
        instance_id, _, rest = spec.partition("=")
        port, _, platform = rest.partition(":")
        if not port.isdigit() or platform not in ("", "nitro", "xen"):
            print(f"--imds {spec}: expected INSTANCE_ID=PORT[:xen], e.g. i-0a000000000000001=9101", file=sys.stderr)
            return 2
        instances.append((instance_id, int(port), platform or "nitro", args.az))
    lab = Lab(args.state, args.port, Settings(region=args.region, dev_root=args.dev_root, delays=delays))
    try:
        lab.start(instances)
    except (ValueError, OSError) as e:
        print(f"ec2lab: cannot start: {e}", file=sys.stderr)
        return 2
    print(
        f"ec2lab: EC2 API http://127.0.0.1:{lab.port}/ (admin /_lab/), state {args.state}, links under {args.dev_root}",
        flush=True,
    )
    with lab.store.lock:
        for inst in lab.store.state.instances.values():
            print(f"ec2lab: {inst.id} ({inst.platform}, {inst.az}) IMDS http://127.0.0.1:{inst.imds_port}/", flush=True)
    return serve_until_signalled(lab.stop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
