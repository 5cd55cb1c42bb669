"""The `convoy` command line."""
