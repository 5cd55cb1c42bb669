"""What the control socket accepts, one schema per endpoint: bodies and query strings.

Every field the CLI sends is a string (or null when the user left it out);
anything else is refused with the field named. Required fields are the ones
the operation cannot do without. Unknown fields are ignored, so an older
daemon still serves a newer CLI. Bounds keep every document small.
(TypedDict comes from typing_extensions: pydantic needs that one before
Python 3.12.)
"""

from __future__ import annotations

from typing import Annotated, NotRequired

from pydantic import Field, StringConstraints
from typing_extensions import TypedDict

# Names and URLs are checked by their own modules (app.names, app.backup.urls),
# which say the rule and give an example, also for an empty one; these bounds
# only keep a request, and its error, short.
Text = Annotated[str, StringConstraints(max_length=4096)]
OptionKey = Annotated[str, StringConstraints(max_length=128)]
Options = Annotated[dict[OptionKey, Text], Field(max_length=64)]
MAX_JOB_WAIT = 30.0  # seconds; longer than any client's poll, shorter than its timeout


class NoFields(TypedDict):
    """POST endpoints that take nothing (umount, cancel): `{}` or an empty body."""


class VolumeCreate(TypedDict):
    name: Text
    driver: NotRequired[Text | None]
    size: NotRequired[Text | None]
    options: NotRequired[Options | None]


class VolumeMount(TypedDict):
    mountpoint: NotRequired[Text | None]


class VolumeResize(TypedDict):
    size: Text


class VolumeDeleteQuery(TypedDict):
    reference_only: NotRequired[bool]  # 1/0, true/false, yes/no


class SnapshotCreate(TypedDict):
    volume: Text
    name: NotRequired[Text | None]


class SnapshotListQuery(TypedDict):
    volume: NotRequired[Text]


class BackupCreate(TypedDict):
    snapshot: Text
    dest: Text
    s3_endpoint: NotRequired[Text | None]
    name: NotRequired[Text | None]


class BackupListQuery(TypedDict):
    dest: Text
    volume: NotRequired[Text]
    s3_endpoint: NotRequired[Text]


class BackupInspectQuery(TypedDict):
    url: Text
    s3_endpoint: NotRequired[Text]


class BackupAction(TypedDict):
    """Delete and verify of one backup."""

    url: Text
    s3_endpoint: NotRequired[Text | None]


class JobInspectQuery(TypedDict):
    #: seconds to hold the answer while the job runs: it comes as soon as the job ends
    #: (a CLI waiting for a job learns of its end at once, without polling faster)
    wait: NotRequired[Annotated[float, Field(ge=0, le=MAX_JOB_WAIT)]]


class RestoreCreate(VolumeCreate):
    url: Text
    s3_endpoint: NotRequired[Text | None]


# schedules (app.control.schedules)


class ScheduleCreate(TypedDict):
    name: Text
    volume: NotRequired[Text | None]
    all: NotRequired[bool]
    driver: NotRequired[Text | None]
    every: NotRequired[Text | None]
    cron: NotRequired[Text | None]
    dest: NotRequired[Text | None]
    s3_endpoint: NotRequired[Text | None]
    keep: NotRequired[Text | None]


class TestClockMove(TypedDict):
    """Only served when the daemon runs on a test clock (CONVOY_TEST_CLOCK)."""

    now: Text
    wait: NotRequired[bool]

# -- encrypted stores (issue 13) ----------------------------------------------

class StoreInit(TypedDict):
    dest: Text
    encrypt: NotRequired[bool]
    passphrase: NotRequired[Text | None]
    key: NotRequired[Text | None]  # base64 of the key's bytes
    s3_endpoint: NotRequired[Text | None]
    block_size: NotRequired[Text | None]  # a size as users write it ("4M"); the daemon checks it
