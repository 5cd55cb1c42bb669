"""Backup tests share the real parts (moto S3, XFS) defined in tests/conftest.py."""

import pytest

from tests.backup.treecheck import make_sample_tree  # noqa: F401 - re-exported for tests


@pytest.fixture(params=["vfs", "s3"])
def dest(request, tmp_path):
    """A store URL and the endpoint to reach it: a directory, and a prefix of a fresh bucket on moto."""
    if request.param == "vfs":
        return f"vfs://{tmp_path}/store", None
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}@us-east-1/backups", endpoint
