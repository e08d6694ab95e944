"""Signed agent tokens (JWT, HS256): who an agent is, for which task, until when.

The signing secret comes from configuration (CFN_TOKEN_SECRET) or is generated
once into the state directory with mode 0600. There is no built-in default.
A token verifies offline with nothing but the secret.
"""

from __future__ import annotations

import math
import os
import secrets
import time
import uuid
from pathlib import Path

from cfn import validate
from cfn.config import ensure_home
from cfn.errors import InvalidInput, NegativeOutcome
from cfn.ids import validate_id

AUDIENCE = "cfn-agents"
ISSUER = "cfn"
ALGORITHM = "HS256"
SECRET_FILE = "token.secret"
MIN_SECRET_BYTES = 32


def signing_secret(configured: str | None, home: Path) -> str:
    """The configured secret, else the project's generated one (created on first use)."""
    if configured:
        if len(configured.encode()) < MIN_SECRET_BYTES:
            raise InvalidInput(
                f"CFN_TOKEN_SECRET must be at least {MIN_SECRET_BYTES} bytes; generate one "
                "with `python3 -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return configured
    path = home / SECRET_FILE
    ensure_home(home)
    try:
        # O_EXCL: of two processes creating it at once, one writes and both read the same
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    for _ in range(100):  # the creator may not have written it yet
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.01)
    raise InvalidInput(f"{path} is empty; delete it to generate a new secret")


def issue(secret: str, *, agent_id: str, task_id: str, ttl: float = 3600,
          role: str = "agent", audience: str = AUDIENCE) -> str:
    """A token for `agent_id` on `task_id`, valid for `ttl` seconds, for `audience` (cfn's
    own services, or one MCP server: mcp_audience)."""
    import jwt

    now = int(time.time())
    claims = {
        "sub": validate_id(agent_id, "agent ID"),
        "task_id": validate_id(task_id, "task ID"),
        "role": validate_id(role, "role"),
        "aud": audience,
        "iss": ISSUER,
        "iat": now,
        # whole seconds, rounded up: a lifetime under one second is one, never none
        "exp": now + math.ceil(validate.positive_seconds(ttl, "ttl")),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def mcp_audience(server: str) -> str:
    """The audience of an agent's tokens for one MCP server."""
    return f"cfn-mcp:{server}"


def mcp_key(secret: str, server: str) -> str:
    """The key an MCP server verifies its agents' tokens with, derived from the project's
    secret: the server holds only this one, so it can mint no token for cfn or for another
    server (`cfn token mcp-key NAME` prints it for the server's configuration)."""
    import hashlib
    import hmac

    return hmac.new(secret.encode(), mcp_audience(server).encode(), hashlib.sha256).hexdigest()


def verify(secret: str, token: str, audience: str = AUDIENCE) -> dict:
    """The token's claims; NegativeOutcome saying why if it is not valid."""
    import jwt

    try:
        return jwt.decode(
            token.strip(), secret, algorithms=[ALGORITHM], audience=audience, issuer=ISSUER,
            options={"require": ["exp", "sub", "aud", "task_id"]},
        )
    except jwt.ExpiredSignatureError:
        raise NegativeOutcome("token expired") from None
    except jwt.InvalidAudienceError:
        raise NegativeOutcome(f"token is not for audience {audience!r}") from None
    except jwt.InvalidSignatureError:
        raise NegativeOutcome("token signature does not match: tampered or another secret")\
            from None
    except jwt.InvalidTokenError as exc:
        raise NegativeOutcome(f"invalid token: {exc}") from None
