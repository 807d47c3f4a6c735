"""Where the operator's token and the server secret come from, and the files that keep them.

- The operator's token: OPENBELL_ADMIN_TOKEN; else the file `--admin-token-file`, or `<data-dir>/admin-token`,
  created (mode 0600) at first start; with `--in-memory`, a token made for this run and printed once. The
  log names the file, never the token.
- The server secret (every API key's secret is derived from it, see `openbell.edge.auth`): OPENBELL_KEY_SECRET;
  else the file `--key-secret-file`, by default `$XDG_CONFIG_HOME/openbell/key-secret` (`~/.config/...`),
  created (mode 0600) at first start, outside the data directory on purpose; with `--in-memory`, a secret
  made for this run (the keys die with it anyway).

The cluster's supervisor resolves both once and hands them to its children in the environment.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import secrets

ADMIN_TOKEN_ENV = "OPENBELL_ADMIN_TOKEN"
KEY_SECRET_ENV = "OPENBELL_KEY_SECRET"
ADMIN_TOKEN_FILE = "admin-token"


class CredentialError(Exception):
    """A token or secret file that cannot be read or made (said in one line)."""


def default_key_secret_file() -> pathlib.Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(pathlib.Path.home() / ".config")
    return pathlib.Path(config) / "openbell" / "key-secret"


def read_or_create(path: pathlib.Path, make: str) -> tuple[str, bool]:
    """The text kept in `path` (stripped), writing `make` there first (mode 0600) if the file does not exist;
    and whether it was created."""
    try:
        return path.read_text().strip(), False
    except FileNotFoundError:
        pass
    except OSError as error:
        raise CredentialError(f"cannot read {path}: {error.strerror}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), False
    except OSError as error:
        raise CredentialError(f"cannot create {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "w") as out:
        out.write(make + "\n")
    return make, True


def admin_token(token_file: str | None, data_dir: str | None) -> tuple[str, str]:
    """(token, where it came from: "env", a file path, or "generated")."""
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if token:
        return token, "env"
    path = pathlib.Path(token_file) if token_file else (pathlib.Path(data_dir) / ADMIN_TOKEN_FILE if data_dir else None)
    if path is None:
        return secrets.token_urlsafe(32), "generated"
    token, _ = read_or_create(path, secrets.token_urlsafe(32))
    if not token:
        raise CredentialError(f"{path} is empty: put the operator's token in it, or delete it to have one made")
    return token, str(path)


def key_secret(secret_file: str | None, in_memory: bool) -> tuple[bytes, str]:
    """(server secret, where it came from: "env", a file path, or "generated")."""
    secret = os.environ.get(KEY_SECRET_ENV, "").strip()
    if secret:
        return secret.encode(), "env"
    if in_memory and not secret_file:
        return secrets.token_hex(32).encode(), "generated"
    path = pathlib.Path(secret_file) if secret_file else default_key_secret_file()
    text, _ = read_or_create(path, secrets.token_hex(32))
    if len(text) < 16:
        raise CredentialError(f"{path} holds fewer than 16 characters: not a usable server secret")
    return text.encode(), str(path)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
