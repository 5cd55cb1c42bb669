"""Schemas of rancher/convoy 0.5.2's objectstore configs (Go field names).

Go's encoding/json writes every field it has, `null` for empty slices and
pointers; the fields the reader does not use are optional here so that a
config from a slightly different 0.5.x still reads. Unknown fields are kept.
"""

from __future__ import annotations

from typing import Annotated, NotRequired

from pydantic import ConfigDict, FailFast, Strict, StringConstraints, with_config
from typing_extensions import TypedDict

from .schemas import Offset, Str

Checksum = Annotated[str, Strict(), StringConstraints(pattern=r"^[0-9a-f]{64}$")]


@with_config(ConfigDict(extra="allow"))
class BlockRef(TypedDict):
    Offset: Offset
    BlockChecksum: Checksum


@with_config(ConfigDict(extra="allow"))
class SingleFile(TypedDict):
    FilePath: NotRequired[Str | None]


@with_config(ConfigDict(extra="allow"))
class BackupCfg(TypedDict):
    Name: Str
    VolumeName: Str
    Driver: NotRequired[Str | None]
    SnapshotName: NotRequired[Str | None]
    SnapshotCreatedAt: NotRequired[Str | None]
    CreatedTime: NotRequired[Str | None]
    Blocks: NotRequired[Annotated[list[BlockRef], FailFast()]]  # Go omits it when empty
    SingleFile: NotRequired[SingleFile | None]


@with_config(ConfigDict(extra="allow"))
class VolumeCfg(TypedDict):
    Name: NotRequired[Str | None]
    Driver: NotRequired[Str | None]
    Size: NotRequired[Offset | None]
    CreatedTime: NotRequired[Str | None]
    LastBackupName: NotRequired[Str | None]
