"""Where the CLI finds the daemon: shared by both, and light enough for every CLI command to import."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_CONTROL_SOCKET = "/run/convoy/convoy.sock"


def start_error_file(control_socket: Path) -> Path:
    """Where a daemon that refused to start leaves its reason, beside its control socket.

    Through the plugin, Docker shows only "cannot dial the socket"; the CLI
    on the host reads this file and says why.
    """
    return control_socket.with_name(control_socket.name + ".error")
