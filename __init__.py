"""openbell: a centralized exchange server on the actor model.

The import package `openbell` is this repository's root (see pyproject.toml): `openbell.core` is the
pure matching core and ledger, `openbell.actors` the pykka engine, `openbell.http` the REST API and
`openbell.ws` the WebSocket streams.
"""

__version__ = "0.1.0"
