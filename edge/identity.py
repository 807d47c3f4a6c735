"""Who is acting: the one function that resolves the user of a request.

Today it reads `user_id` from the JSON body or the query string. No handler reads `user_id` itself, and
the WebSocket server uses the same function for the upgrade request before it lets a connection read
`orders@<user>` or `balance@<user>`.
"""

from __future__ import annotations

import re
from typing import Any

from openbell.core.types import ResultCode
from openbell.edge.errors import ApiError

USER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


def resolve_user(request: Any, body: dict[str, Any] | None = None) -> str:
    """The acting user's id, or ApiError(400) if the request does not say who it is."""
    value: Any = None
    if body is not None:
        value = body.get("user_id")
    if value is None:
        value = request.args.get("user_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not USER_ID.match(value):
        raise ApiError.of(ResultCode.INVALID_USER, "user_id is required: 1-64 characters of A-Z a-z 0-9 _ . -")
    return value
