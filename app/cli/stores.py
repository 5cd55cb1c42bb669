"""`convoy store init`: make a backup store, plain or encrypted.

The secret for an encrypted store is read here and sent once, over the
root-only control socket, to the daemon that writes the store config:
--key-file F (a key), else CONVOY_STORE_PASSPHRASE, else CONVOY_STORE_KEY,
else a passphrase typed twice at a terminal. The daemon keeps nothing of
it: for backups it uses its own secret (CONVOY_STORE_PASSPHRASE,
CONVOY_STORE_KEY_FILE or CONVOY_STORE_KEY in its environment).
"""

from __future__ import annotations

import base64
import getpass
import os
import sys

import typer

from app.cli.context import client as _client
from app.cli.context import user_errors as _guard
from app.cli.flags import JsonFlag
from app.cli.output import print_json
from app.errors import InvalidInput
from app.json_types import JSONObject
from app.key_file import read_key_file

store_app = typer.Typer(help="Backup stores: make one, plain or encrypted.", no_args_is_help=True)


def _secret_fields(key_file: str | None) -> dict[str, str]:
    if key_file:
        return {"key": base64.b64encode(read_key_file(key_file, InvalidInput)).decode()}
    if passphrase := os.environ.get("CONVOY_STORE_PASSPHRASE"):
        return {"passphrase": passphrase}
    if key_text := os.environ.get("CONVOY_STORE_KEY"):
        return {"key": base64.b64encode(key_text.encode()).decode()}
    if not sys.stdin.isatty():
        raise InvalidInput(
            "an encrypted store needs a secret: give --key-file F, or set CONVOY_STORE_PASSPHRASE or "
            "CONVOY_STORE_KEY (no terminal to ask for a passphrase)"
        )
    first = getpass.getpass("Passphrase for the new store: ")
    if first != getpass.getpass("The same passphrase again: "):
        raise InvalidInput("the two passphrases differ: nothing was made")
    return {"passphrase": first}


@store_app.command("init")
@_guard
def store_init(
    dest: str = typer.Argument(..., help="vfs:///path or s3://bucket@region/prefix"),
    encrypt: bool = typer.Option(False, "--encrypt", help="encrypt blocks and manifests on this host"),
    key_file: str | None = typer.Option(None, "--key-file", help="a file holding the key (else a passphrase)"),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL (default: the daemon's)"),
    block_size: str | None = typer.Option(
        None,
        "--block-size",
        help="unit of dedup and of requests, a power of two from 64K to 16M (default: 1M on vfs://, 4M on S3)",
    ),
    as_json: bool = JsonFlag,
) -> None:
    """Make a new backup store (backups to a new URL make a plain one anyway)."""
    if key_file and not encrypt:
        raise InvalidInput("--key-file goes with --encrypt")
    body: JSONObject = {"dest": dest, "encrypt": encrypt, "s3_endpoint": s3_endpoint, "block_size": block_size}
    if encrypt:
        body.update(_secret_fields(key_file))
    result = _client().request("POST", "/stores", body)
    if as_json:
        return print_json(result)
    kind = f"encrypted store ({'passphrase' if result.get('kdf') == 'scrypt' else 'key'})" if result.get("encrypted") else "store"
    from app.units import format_size  # here: the CLI's other commands need not import fractions

    typer.echo(f"made {kind} {result['url']} ({format_size(result['block_size'])} blocks)")
    if result.get("warning"):
        typer.echo(f"convoy: {result['warning']}", err=True)
