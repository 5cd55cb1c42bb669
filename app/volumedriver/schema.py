"""What Docker sends on the plugin socket, one schema per endpoint (docker.volumedriver/1.0).

Docker always sends strings: `Name`, the container `ID`, and `Opts` from
`docker volume create -o KEY=VALUE` (null when there are none). Anything
else is refused with the field named. Unknown fields are ignored: newer
Dockers add some. Bounds keep a request small whatever the body cap.
(TypedDict comes from typing_extensions: pydantic needs that one before
Python 3.12.)
"""

from __future__ import annotations

from typing import Annotated, NotRequired

from pydantic import Field, StringConstraints
from typing_extensions import TypedDict

MAX_OPTIONS = 64
OptionKey = Annotated[str, StringConstraints(max_length=128)]
OptionValue = Annotated[str, StringConstraints(max_length=4096)]  # a backup URL is the longest
Options = Annotated[dict[OptionKey, OptionValue], Field(max_length=MAX_OPTIONS)]
# Names are checked by app.names (which says the rule); the bound here only keeps messages short.
Name = Annotated[str, StringConstraints(max_length=1024)]
ContainerID = Annotated[str, StringConstraints(max_length=1024)]


class NoFields(TypedDict):
    """Activate, List, Capabilities: Docker sends nothing or `{}`."""


class NameRequest(TypedDict):
    """Remove, Path, Get. A missing Name is left to the name check, which says it is required."""

    Name: NotRequired[Name]


class CreateRequest(TypedDict):
    Name: NotRequired[Name]
    Opts: NotRequired[Options | None]


class MountRequest(TypedDict):
    """Mount and Unmount: `ID` is the container's, the key of its mount reference."""

    Name: NotRequired[Name]
    ID: NotRequired[ContainerID]
