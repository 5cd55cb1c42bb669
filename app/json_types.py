"""Names for JSON-shaped values that no schema describes.

Results the daemon sends back (a backup's summary, a job's view) are built
as plain dicts and read by key by code that knows the document; their
values are JSON values of any kind, hence Any. Documents read from outside
have schemas of their own (`app.validation`) and do not use these.
"""

from __future__ import annotations

from typing import Any

JSONObject = dict[str, Any]
