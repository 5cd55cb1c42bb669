"""Control route for `convoy store init`: a new backup store, plain or encrypted."""

from __future__ import annotations

import base64
from functools import partial

from starlette.requests import Request
from starlette.routing import Route

from app.backup_service import BackupService
from app.control import schema
from app.control.api import API_VERSION, Reply, WorkerPools, json_endpoint
from app.errors import InvalidInput


def store_routes(backups: BackupService, pools: WorkerPools) -> list[Route]:
    def init(request: Request, body: schema.StoreInit) -> Reply:
        key = None
        if body.get("key") is not None:
            try:
                key = base64.b64decode(body["key"] or "", validate=True)
            except ValueError:  # binascii.Error, and non-ASCII text
                raise InvalidInput("key: not base64 (the CLI sends a key file's bytes in base64)") from None
        passphrase = body.get("passphrase")
        if body.get("encrypt") and passphrase is None and key is None:
            raise InvalidInput("an encrypted store needs a passphrase or a key: give --key-file or a passphrase")
        if not body.get("encrypt") and (passphrase is not None or key is not None):
            raise InvalidInput("a passphrase or key makes sense only with --encrypt")
        return 201, backups.init_store(
            body["dest"], passphrase=passphrase, key=key, s3_endpoint=body.get("s3_endpoint"), block_size=body.get("block_size")
        )

    # init waits on the store, and scrypt takes a moment: the store pool, not the control one
    waits_on_store = partial(json_endpoint, pool=pools.store)
    return [Route(f"/{API_VERSION}/stores", waits_on_store(init, body=schema.StoreInit), methods=["POST"])]
