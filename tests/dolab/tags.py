"""DO's tags: names of letters, digits, ':', '-' and '_' (at most 255), "case stable" — the capitalization a tag was
first made with is its canonical one, a resource tagged with another capitalization gets the canonical spelling, and
the /v2/tags/{name} URLs take only the canonical one. Volumes and volume snapshots carry them (`tags` at creation, or
POST/DELETE /v2/tags/{name}/resources); a tag used at creation is made on the fly, as DO does."""

from __future__ import annotations

import re
from typing import Any

from tests.dolab import render
from tests.dolab.model import State
from tests.dolab.render import DoError, not_found

TAG = re.compile(r"[\w:-]{1,255}", re.ASCII)
TAGGABLE = {"volume": "volumes", "volume_snapshot": "snapshots"}  # resource_type -> where the state keeps them
NOT_EMULATED = {"droplet", "image", "database"}


def canonical(state: State, name: Any, status: int = 422) -> str:
    """The tag's canonical spelling, making the tag if it is new; DoError(status) for a name DO refuses."""
    if not isinstance(name, str) or not TAG.fullmatch(name):
        raise DoError(status, f"tag names may contain letters, numbers, colons, dashes and underscores (at most 255): {name!r}")
    for existing in state.tags:
        if existing.lower() == name.lower():
            return existing
    state.tags.append(name)
    return name


def tag_list(state: State, names: Any) -> list[str]:
    """A resource's `tags` at creation: each made canonical, each once."""
    if names is None:
        return []
    if not isinstance(names, list):
        raise DoError(422, f"tags must be a list of tag names, got {names!r}")
    tags: list[str] = []
    for name in names:
        tag = canonical(state, name)
        if tag not in tags:
            tags.append(tag)
    return tags


class TagRoutes:
    """The /v2/tags endpoints, for Cloud's routing table."""

    def __init__(self, state: State):
        self.s = state

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", r"/v2/tags", self.list_tags),
            ("POST", r"/v2/tags", self.create_tag),
            ("GET", r"/v2/tags/([^/]+)", self.get_tag),
            ("DELETE", r"/v2/tags/([^/]+)", self.delete_tag),
            ("POST", r"/v2/tags/([^/]+)/resources", self.tag_resources),
            ("DELETE", r"/v2/tags/([^/]+)/resources", self.untag_resources),
        ]

    def _render(self, name: str) -> dict[str, Any]:
        volumes = sum(name in v.tags for v in self.s.volumes.values())
        snapshots = sum(name in s.tags for s in self.s.snapshots.values())
        return {
            "name": name,
            "resources": {
                "count": volumes + snapshots,
                "droplets": {"count": 0},
                "images": {"count": 0},
                "volumes": {"count": volumes},
                "volume_snapshots": {"count": snapshots},
                "databases": {"count": 0},
            },
        }

    def _existing(self, name: str) -> str:
        if name not in self.s.tags:  # the canonical spelling only, as DO's URLs
            raise not_found()
        return name

    def list_tags(self, query, body, url):
        items, extra = render.page([self._render(t) for t in self.s.tags], query, url)
        return 200, {"tags": items, **extra}

    def create_tag(self, query, body, url):
        return 201, {"tag": self._render(canonical(self.s, body.get("name"), status=400))}

    def get_tag(self, name, query, body, url):
        return 200, {"tag": self._render(self._existing(name))}

    def delete_tag(self, name, query, body, url):
        tag = self._existing(name)
        for resource in [*self.s.volumes.values(), *self.s.snapshots.values()]:
            if tag in resource.tags:
                resource.tags.remove(tag)
        self.s.tags.remove(tag)
        return 204, None

    def tag_resources(self, name, query, body, url):
        tag = self._existing(name)
        for resource in self._resources(body):
            if tag not in resource.tags:
                resource.tags.append(tag)
        return 204, None

    def untag_resources(self, name, query, body, url):
        tag = self._existing(name)
        for resource in self._resources(body):
            if tag in resource.tags:
                resource.tags.remove(tag)
        return 204, None

    def _resources(self, body: dict[str, Any]) -> list[Any]:
        wanted = body.get("resources")
        if not isinstance(wanted, list) or not wanted:
            raise DoError(400, "resources must be a list of {resource_id, resource_type} objects")
        found = []
        for item in wanted:
            kind = item.get("resource_type") if isinstance(item, dict) else None
            if kind in NOT_EMULATED:
                raise DoError(422, f"dolab does not emulate tags on a {kind}; it keeps them on volumes and volume snapshots")
            if kind not in TAGGABLE:
                raise DoError(400, f"resource_type must be droplet, image, volume, volume_snapshot or database: {item!r}")
            resource = getattr(self.s, TAGGABLE[kind]).get(str(item.get("resource_id")))
            if resource is None:
                raise not_found()
            found.append(resource)
        return found
