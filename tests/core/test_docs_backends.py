"""Every back-end has its page under docs/backends/, linked from the index docs/backends.md."""

from app.storage import registry
from tests.daemon_harness import REPO


def test_each_backend_has_a_page_the_index_links():
    index = (REPO / "docs" / "backends.md").read_text()
    for name in registry.DRIVERS:
        page = REPO / "docs" / "backends" / f"{name}.md"
        assert page.is_file(), f"docs/backends/{name}.md is missing"
        assert page.read_text().startswith(f"# The `{name}` back-end\n")
        assert f"[{name}](backends/{name}.md)" in index, f"docs/backends.md does not link {name}"
