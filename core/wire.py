"""The one encoding of every message, for Redis, the journal, snapshots and people: msgspec's JSON.

A message is a `Record` (or a tuple of them); msgspec encodes it directly (an array tagged with the
class name, see `openbell.core.types.Record`) and decodes it straight back into the same class, checking
every field's type: no conversion layer. What crosses Redis starts with one byte, `WIRE_VERSION`, so a
process never misreads a message of another version; the journal and snapshots carry their own format
versions in their file headers.

Why JSON and not MessagePack: amounts of an asset are integers of any size (ten ETH is 10**19 minor units;
a balance or a quote volume can pass 10**30), and MessagePack's integers stop at 2**64 - 1, while msgspec's
JSON carries any integer exactly. Measured on this machine for a routed PlaceOrder: JSON encodes in 422 ns
and decodes in 446 ns, MessagePack 439 and 526 ns; JSON is about 40% larger (129 bytes against 90).

`decode` raises `WireError` for anything that does not decode (bytes of another version, truncated,
of the wrong shape or type); callers log it and skip the message, never stop on it.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import msgspec

T = TypeVar("T")

WIRE_VERSION = 2
"""1: JSON objects with class names in "@" fields (core/codec.py). 2: msgspec JSON of tagged arrays."""
_VERSION = bytes((WIRE_VERSION,))

_json = msgspec.json.Encoder()


class WireError(ValueError):
    """A message that cannot be decoded."""


def encode(message: Any) -> bytes:
    """`message` as it crosses Redis: the version byte, then JSON."""
    return _VERSION + _json.encode(message)


@overload
def decode(data: bytes, kind: type[T]) -> T: ...
@overload
def decode(data: bytes, kind: Any) -> Any: ...


def decode(data: bytes, kind: Any) -> Any:
    """The `kind` message in `data` (as `encode` made it). Raises WireError."""
    if not data or data[0] != WIRE_VERSION:
        found = data[0] if data else "nothing"
        raise WireError(f"not a wire message of version {WIRE_VERSION} (first byte {found})")
    try:
        return _decoder(kind).decode(memoryview(data)[1:])
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise WireError(str(error)) from None


def pack(message: Any) -> bytes:
    """The encoding without the version byte (a journal record, a snapshot: their files carry the version)."""
    return _json.encode(message)


@overload
def unpack(data: bytes | memoryview, kind: type[T]) -> T: ...
@overload
def unpack(data: bytes | memoryview, kind: Any) -> Any: ...


def unpack(data: bytes | memoryview, kind: Any) -> Any:
    """The `kind` message in `data` (as `pack` made it). Raises WireError."""
    try:
        return _decoder(kind).decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise WireError(str(error)) from None


def to_json(message: Any) -> bytes:
    """JSON, for what a person reads (logs, files an operator inspects)."""
    return _json.encode(message)


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return decoder
