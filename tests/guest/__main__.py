"""python -m tests.guest build | run [PYTEST ARGS...] | shell   (see tests/guest/README.md)"""

import sys

from tests.guest.image import GuestBuildError, ensure_image

USAGE = """usage: python -m tests.guest COMMAND
  build                  build the guest image (cached; root)
  run [PYTEST ARGS...]   boot the guest, run pytest inside (default: tests/guest/inside), exit with its status
  shell                  boot the guest with its console on this terminal and a root shell (Ctrl-D powers off)
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("build", "run", "shell"):
        print(USAGE, file=sys.stderr)
        return 4
    try:
        image = ensure_image()
    except GuestBuildError as error:
        print(f"guest-image: {error}", file=sys.stderr)
        return 3
    if argv[0] == "build":
        print(f"guest image ready: {image.root.parent}")
        return 0
    from tests.guest.boot import run_pytest, run_shell

    return run_shell(image) if argv[0] == "shell" else run_pytest(image, argv[1:]).status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
