"""How the DO API client reads DigitalOcean's answers: how long a 429 waits, which error a status becomes."""

from __future__ import annotations

import json
import time

import pytest
import requests

from app.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.storage.do_api import MAX_RATE_WAIT, _error, _rate_limit_wait


def test_a_429_waits_for_retry_after_else_ratelimit_reset_within_bounds():
    assert _rate_limit_wait({"retry-after": "2"}) == 2
    assert _rate_limit_wait({"retry-after": "600"}) == MAX_RATE_WAIT, "one wait never eats Docker's time"
    assert 1.0 < _rate_limit_wait({"ratelimit-reset": str(time.time() + 3)}) <= 3
    assert _rate_limit_wait({"ratelimit-reset": str(time.time() - 5)}) == 0.2, "a reset in the past: a short pause"
    assert _rate_limit_wait({}) == 1.0


def answer(status: int, body: dict | None) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made._content = json.dumps(body).encode() if body is not None else b"<html>bad gateway</html>"
    return made


@pytest.mark.parametrize(
    "status, body, kind, words",
    [
        (401, {"id": "unauthorized", "message": "Unable to authenticate you"}, Unavailable, "refused the API token"),
        (403, {"id": "forbidden", "message": "You do not have access"}, Unavailable, "may not do this"),
        (404, {"id": "not_found", "message": "The resource you were accessing could not be found."}, NotFound, "not_found"),
        (409, {"id": "conflict", "message": "attached volume cannot be deleted"}, Conflict, "cannot be deleted"),
        (422, {"id": "unprocessable_entity", "message": "invalid volume name"}, InvalidInput, "invalid volume name"),
        (502, None, Unavailable, "DigitalOcean is failing"),
    ],
)
def test_dos_error_json_becomes_our_error_naming_the_call(status, body, kind, words):
    error = _error("POST volumes", answer(status, body))
    assert isinstance(error, kind) and words in str(error) and str(error).startswith(f"POST volumes: {status}"), error
