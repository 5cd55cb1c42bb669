"""Convoy for Python: a Docker volume plugin with snapshots, backups and restores."""
