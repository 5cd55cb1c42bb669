"""Backup tests share the real parts (moto S3, XFS) defined in tests/conftest.py."""

from tests.backup.treecheck import make_sample_tree  # noqa: F401 - re-exported for tests
