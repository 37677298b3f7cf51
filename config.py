"""Configuration defaults; an environment variable of the same name overrides each key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

# Keys an operator may set, with their defaults. "{instance}" is replaced by the instance folder.
DEFAULTS: dict[str, Any] = {
    "ENV": "production",  # production | development | testing
    "DATABASE_URL": "sqlite:///{instance}/wiki.db",
    "SECRET_KEY": None,  # from the environment, else generated once into instance/secret_key
    "SEARCH_INDEX_DIR": "{instance}/index",
    "SEARCH_CACHE_MB": 64,  # per process: posting lists held in memory for fast searches
    "REVIEW_POLICY": "contributors",  # contributors | everyone | off
    "REVIEW_MIN_APPROVALS": 1,
    "REVIEW_STALE_DAYS": 7,
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STORAGE_URI": "memory://",  # redis://host:6379/0 to share counters between nodes
    "RATELIMIT_KEY_PREFIX": "nexus-wiki",  # distinguishes wikis sharing one Redis
    "RATELIMIT_LOGIN": "20 per minute",  # login POSTs per client address
    "RATELIMIT_REGISTER": "10 per hour",  # registrations per client address
    "RATELIMIT_PASSWORD": "10 per hour",  # password changes per client address
    "RATELIMIT_SAVES": "30 per minute",  # edit/new-page POSTs per user (per address if anonymous)
    "TRUSTED_PROXIES": 0,  # reverse proxies in front (X-Forwarded-For/-Proto/-Host trusted)
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    "SESSION_COOKIE_SECURE": None,  # None: on in production, off otherwise
    "SITE_NAME": "Nexus Wiki",
    "MAX_PAGE_BYTES": 512 * 1024,
    "LOGIN_MAX_FAILURES": 5,
    "LOG_LEVEL": "INFO",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(key: str, raw: str, default: Any) -> Any:
    """Turn an environment string into the type of the key's default."""
    if isinstance(default, bool) or key in {"SESSION_COOKIE_SECURE"}:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{key} must be true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{key} must be a whole number, got {raw!r}") from None
    return raw


def _secret_key(instance: Path) -> str:
    """Read instance/secret_key, creating it once with mode 0600 (stops forged sessions).

    The key is written to a private temporary file and hard-linked into place, so workers
    starting together never read a half-written file and all end up with the same key.
    """
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        tmp = instance / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable secret key; delete it to generate a new one")
    return key


def load(instance_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the settings: defaults, then environment variables, then explicit overrides."""
    instance = Path(instance_path)
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        if key in overrides:
            values[key] = overrides.pop(key)
        elif key in os.environ:
            values[key] = _coerce(key, os.environ[key], default)
        else:
            values[key] = default
        if isinstance(values[key], str):
            values[key] = values[key].replace("{instance}", str(instance))
    values.update(overrides)

    if values["REVIEW_POLICY"] not in {"contributors", "everyone", "off"}:
        raise ValueError("REVIEW_POLICY must be contributors, everyone or off")
    if not values.get("SECRET_KEY"):
        values["SECRET_KEY"] = _secret_key(instance)
    elif values["ENV"] == "production" and len(str(values["SECRET_KEY"])) < 32:
        raise ValueError(
            "SECRET_KEY is too short for production (use at least 32 random characters, "
            'e.g. python -c "import secrets; print(secrets.token_hex(32))"), or unset it '
            "to have one generated into the instance folder"
        )
    if values["SESSION_COOKIE_SECURE"] is None:
        values["SESSION_COOKIE_SECURE"] = values["ENV"] == "production"

    url = values["DATABASE_URL"]
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    values["SQLALCHEMY_DATABASE_URI"] = url
    if url.startswith("sqlite:"):
        Path(instance).mkdir(parents=True, exist_ok=True)
    values["TESTING"] = values["ENV"] == "testing"
    return values
