"""The control API on the control socket, used by the `convoy` CLI."""
