"""Reading the EC2 Query API's flattened form parameters (VolumeId.1, Filter.1.Value.2, TagSpecification.1.Tag.1.Key)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from tests.ec2lab.xmlout import Ec2Error

T = TypeVar("T")
MAX_LIST = 1000  # no request of ours lists more: bounds every scan of numbered keys


class Params:
    def __init__(self, form: dict[str, str]):
        self.form = form

    def str(self, name: str, required: bool = False) -> str | None:
        value = self.form.get(name)
        if required and not value:
            raise Ec2Error("MissingParameter", f"The request must contain the parameter {name}")
        return value

    def req(self, name: str) -> str:
        value = self.str(name, required=True)
        assert value is not None
        return value

    def int(self, name: str) -> int | None:
        value = self.form.get(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise Ec2Error(
                "InvalidParameterValue", f"Value ({value}) for parameter {name} is invalid. Expected an integer."
            ) from None

    def bool(self, name: str) -> bool | None:
        value = self.form.get(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise Ec2Error("InvalidParameterValue", f"Value ({value}) for parameter {name} is invalid. Expected true or false.")
        return value.lower() == "true"

    def list(self, prefix: str) -> list[str]:
        """Values of PREFIX.1, PREFIX.2, ... in order."""
        return [self.form[f"{prefix}.{i}"] for i in range(1, MAX_LIST) if f"{prefix}.{i}" in self.form]

    def groups(self, prefix: str) -> list[str]:
        """The PREFIX.N prefixes of a list of structures (Filter.1, Filter.2, ...)."""
        # the index right after the prefix, however deep the prefix is (TagSpecification.1.Tag.2.Key -> 2)
        depth = prefix.count(".") + 1
        present = {
            key.split(".")[depth] for key in self.form if key.startswith(prefix + ".") and key.count(".") > depth
        }
        return [f"{prefix}.{n}" for n in sorted(present, key=lambda s: int(s) if s.isdigit() else 0)]

    def filters(self) -> list[tuple[str, list[str]]]:
        return [(self.form.get(f"{g}.Name", ""), self.list(f"{g}.Value")) for g in self.groups("Filter")]

    def tags(self, prefix: str = "Tag") -> list[tuple[str, str | None]]:
        return [(self.form.get(f"{g}.Key", ""), self.form.get(f"{g}.Value")) for g in self.groups(prefix)]

    def tag_specifications(self, resource_type: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        for g in self.groups("TagSpecification"):
            kind = self.form.get(f"{g}.ResourceType")
            if kind != resource_type:
                raise Ec2Error("InvalidParameterValue", f"'{kind}' is not a valid taggable resource type for this operation.")
            tags.update({key: value or "" for key, value in self.tags(f"{g}.Tag")})
        return tags


def matches(filters: list[tuple[str, list[str]]], fields: dict[str, Callable[[Any], Iterable[str]]], tags_of, obj) -> bool:
    """AWS's filter rule: every filter matches (values may hold * and ? wildcards, any value suffices)."""
    for name, values in filters:
        if name.startswith("tag:"):
            have = [tags_of(obj).get(name[4:])] if name[4:] in tags_of(obj) else []
        elif name == "tag-key":
            have = list(tags_of(obj))
        elif name == "tag-value":
            have = list(tags_of(obj).values())
        elif name in fields:
            have = [str(v) for v in fields[name](obj)]
        else:
            raise Ec2Error("InvalidParameterValue", f"The filter '{name}' is invalid")
        if not any(fnmatchcase(h, v) for h in have for v in values):
            return False
    return True


def page(
    items: list[T],
    params: Params,
    max_name: str = "MaxResults",
    token_name: str = "NextToken",  # noqa: S107 - a parameter name, not a password
) -> tuple[list[T], str | None]:
    """MaxResults/NextToken paging: the token is the next offset, opaque to the client."""
    max_results = params.int(max_name)
    token = params.str(token_name)
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except (ValueError, binascii.Error):
            raise Ec2Error("InvalidParameterValue", f"The token '{token}' is invalid.") from None
    if max_results is None:
        return items[start:], None
    if not 5 <= max_results <= 1000:
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ({max_results}) for parameter maxResults is invalid. Expecting a value between 5 and 1000.",
        )
    end = start + max_results
    next_token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], next_token
