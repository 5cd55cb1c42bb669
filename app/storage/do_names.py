"""Docker's volume names as DigitalOcean names and tags, both ways.

DigitalOcean names a volume with at most 64 characters from [a-z0-9-],
starting with a letter and not ending with '-'; Docker allows 200 from
[a-zA-Z0-9_.-]. `volume_name` maps a Docker name to a DO name
deterministically, so every droplet of a region finds the same DO volume
for the same Docker name (scope `global`): a name DO accepts is kept as it
is; any other becomes a readable prefix and a hash of the whole Docker name,
so two Docker names never meet on one DO name in practice ("Data" and
"data" differ).

The Docker name itself rides on the volume (and its snapshots) as a tag,
`convoy:name:<encoded>`, which is how another droplet lists the volume under
its Docker name and how an adopted volume with any DO name is found again.
DO tags allow only [A-Za-z0-9:_-] and match regardless of case, so the
encoding is lowercase and reversible: '.' becomes ':', '_' becomes '__' and
an upper-case letter '_' and its lower-case form.
"""

from __future__ import annotations

import hashlib
import re

from app.errors import InvalidInput

MAX_NAME = 64
MAX_TAG = 255
HASH_LENGTH = 10  # hex digits: 40 bits, with the readable prefix alongside
#: DigitalOcean's rule for a volume's name
VALID_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: DigitalOcean's rule for a tag (letters, digits, colons, dashes, underscores)
VALID_TAG = re.compile(r"^[A-Za-z0-9:_-]{1,255}$")
NAME_TAG = "convoy:name:"


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(VALID_NAME.fullmatch(name))


def volume_name(docker_name: str) -> str:
    """The DO volume name for a Docker volume name: itself when DO accepts it, else a prefix and a hash."""
    if is_valid_name(docker_name):
        return docker_name
    digest = hashlib.sha256(docker_name.encode()).hexdigest()[:HASH_LENGTH]
    prefix = re.sub(r"[^a-z0-9]+", "-", docker_name.lower()).strip("-")
    if not prefix[:1].isalpha():
        prefix = f"v-{prefix}".rstrip("-")
    prefix = prefix[: MAX_NAME - HASH_LENGTH - 1].rstrip("-")
    return f"{prefix}-{digest}"


def name_tag(docker_name: str) -> str:
    """The tag that carries a Docker name on a DO volume or snapshot."""
    encoded = []
    for char in docker_name:
        if char == ".":
            encoded.append(":")
        elif char == "_":
            encoded.append("__")
        elif char.isupper():
            encoded.append("_" + char.lower())
        else:
            encoded.append(char)
    tag = NAME_TAG + "".join(encoded)
    if len(tag) > MAX_TAG:
        raise InvalidInput(
            f"volume name {docker_name!r} is too long for the digitalocean back-end: it must fit in a DigitalOcean "
            f"tag of {MAX_TAG} characters (upper-case letters and '_' count twice); use a shorter name"
        )
    return tag


def name_from_tags(tags: list[str] | None) -> str | None:
    """The Docker name a volume's or snapshot's tags carry, if any."""
    for tag in tags or []:
        if tag.lower().startswith(NAME_TAG):
            return _decode(tag[len(NAME_TAG) :].lower())
    return None


def _decode(encoded: str) -> str | None:
    out = []
    chars = iter(encoded)
    for char in chars:
        if char == ":":
            out.append(".")
        elif char == "_":
            following = next(chars, "")
            if following == "_":
                out.append("_")
            elif following.isalpha():
                out.append(following.upper())
            else:
                return None  # not ours
        else:
            out.append(char)
    return "".join(out) or None


def check_tag(tag: str, option: str = "tags") -> str:
    if not VALID_TAG.fullmatch(tag):
        raise InvalidInput(f"{option}: {tag!r} is not a DigitalOcean tag: use 1 to {MAX_TAG} letters, digits, ':', '-' or '_'")
    if tag.lower().startswith("convoy:"):
        raise InvalidInput(f"{option}: {tag!r} starts with convoy:, which convoy keeps for its own tags; pick another")
    return tag
