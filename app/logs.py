"""The daemon's log: text lines (the default) or one JSON object a line (`--log-format json`).

Every line logged while an operation runs carries that operation's context:
the volume it is about, the job that runs it and the request that started it.
The context lives in contextvars, set by the request handlers and the job
runner: anyio copies them into the worker thread of a request, and the job
runner into the thread of a job, so no call in between passes them along.
Docker's plugin requests carry no id of their own: each gets one here.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from app.errors import InvalidInput

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

volume: contextvars.ContextVar[str | None] = contextvars.ContextVar("volume", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
CONTEXT = {"volume": volume, "job_id": job_id, "request_id": request_id}


def check_format(value: str, where: str) -> str:
    if value not in FORMATS:
        raise InvalidInput(f"{where} {value!r} is not a log format: use text (the default) or json")
    return value


def new_request_id() -> str:
    return secrets.token_hex(8)


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Set context fields (volume, job_id, request_id) for the lines logged inside; None leaves one unset."""
    tokens = [(CONTEXT[key], CONTEXT[key].set(value)) for key, value in values.items() if value]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind_volume(name: str) -> None:
    """Name the volume of the operation under way, for the rest of this context (a request's worker
    thread, a job's thread), once the code knows it (a backup request names only its snapshot)."""
    volume.set(name)


class ContextFilter(logging.Filter):
    """Copies the context fields onto each record, in the thread that logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, var in CONTEXT.items():
            setattr(record, key, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, RFC 3339), level, logger, message, the context fields that are set,
    and the traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(log_format: str, level: str) -> None:
    """The root logger's one handler (stderr), in the chosen format; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
