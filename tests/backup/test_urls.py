import pytest

from app.backup.urls import parse_backup_url, parse_store_url
from app.errors import InvalidInput


@pytest.mark.parametrize(
    "text, scheme, path, bucket, region, prefix",
    [
        ("vfs:///var/lib/backups", "vfs", "/var/lib/backups", "", None, ""),
        ("vfs:///var/lib/backups/", "vfs", "/var/lib/backups", "", None, ""),
        ("s3://my-bucket@us-west-2/some/prefix", "s3", "", "my-bucket", "us-west-2", "some/prefix"),
        ("s3://my-bucket@eu-central-1", "s3", "", "my-bucket", "eu-central-1", ""),
        ("s3://my-bucket/p", "s3", "", "my-bucket", None, "p"),
    ],
)
def test_store_urls(text, scheme, path, bucket, region, prefix):
    url = parse_store_url(text)
    assert (url.scheme, url.path, url.bucket, url.region, url.prefix) == (scheme, path, bucket, region, prefix)


def test_store_url_prints_back():
    assert str(parse_store_url("s3://b1b@us-east-1/x/y/")) == "s3://b1b@us-east-1/x/y"
    assert str(parse_store_url("vfs:///srv/b")) == "vfs:///srv/b"


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "destination is required"),
        ("/var/lib/backups", "not a store URL"),
        ("vfs://var/lib/backups", "three slashes"),
        ("vfs://relative", "three slashes"),
        ("vfs:///", "absolute directory"),
        ("vfs:///a/../b", "'..'"),
        ("s3://", "names a bucket"),
        ("s3://b@us-east-1/x", "not a valid S3 bucket name"),
        ("s3://bucket@US_EAST/x", "not a valid region"),
        ("ftp://host/x", "not a store URL"),
        ("vfs:///x?backup=a&volume=b", "must not have"),
    ],
)
def test_bad_store_urls_say_what_is_wrong(text, says):
    with pytest.raises(InvalidInput) as err:
        parse_store_url(text)
    assert says in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "vfs:///srv/fixture?backup=backup-90df2b1db9084d50&volume=fixvol",
        "vfs:///srv/fixture?backup=backup-90df2b1db9084d50\\u0026volume=fixvol",  # as Convoy printed it
        "vfs:///srv/fixture?backup=backup-90df2b1db9084d50u0026volume=fixvol",
        "  vfs:///srv/fixture?volume=fixvol&backup=backup-90df2b1db9084d50\n",
    ],
)
def test_backup_urls_accept_convoy_spellings_and_print_plain_ampersand(text):
    url = parse_backup_url(text)
    assert (url.store.path, url.backup, url.volume) == ("/srv/fixture", "backup-90df2b1db9084d50", "fixvol")
    assert str(url) == "vfs:///srv/fixture?backup=backup-90df2b1db9084d50&volume=fixvol"


@pytest.mark.parametrize(
    "text, says",
    [
        ("vfs:///srv/x", "does not name a backup"),
        ("vfs:///srv/x?backup=b1", "lacks volume"),
        ("vfs:///srv/x?volume=v1", "lacks backup"),
        ("vfs:///srv/x?backup=../../etc&volume=v1", "backup name '../../etc' is not valid"),
        ("vfs:///srv/x?backup=b1&volume=v1&colour=red", "unknown field"),
        ("s3://bucket@us-east-1?backup=b1&volume=a/b", "volume name 'a/b' is not valid"),
    ],
)
def test_bad_backup_urls(text, says):
    with pytest.raises(InvalidInput) as err:
        parse_backup_url(text)
    assert says in str(err.value)
