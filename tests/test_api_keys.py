"""API keys as the balance stage keeps them: made, listed, revoked, bounded per user, and carried by a snapshot.
No secret is ever part of this state (see `openbell.edge.auth`)."""

from __future__ import annotations

from openbell.core import wire
from openbell.core.commands import CreateApiKey, GetApiKeys, RevokeApiKey
from openbell.core.messages import ApiKeys, ApiKeyView, CommandBatch, Reply
from openbell.core.risk import MAX_API_KEYS_PER_USER, BalanceCore
from openbell.core.types import Permission, ResultCode

READ_TRADE = (Permission.READ, Permission.TRADE)


class Keys:
    """A balance stage and the commands sent to it, numbered in order."""

    def __init__(self, core: BalanceCore | None = None) -> None:
        self.core = core or BalanceCore()
        self.seq = 0

    def send(self, command_class: type, **fields: object) -> Reply:
        self.seq += 1
        command = command_class(self.seq, 1_700_000_000_000 + self.seq, **fields)
        (reply,) = self.core.handle_commands(CommandBatch((command,))).replies
        return reply

    def create(self, api_key: str, user_id: str, permissions: tuple[Permission, ...] = READ_TRADE) -> Reply:
        return self.send(CreateApiKey, api_key=api_key, user_id=user_id, permissions=permissions)

    def of_user(self, user_id: str) -> list[str]:
        return [key.api_key for key in self.send(GetApiKeys, user_id=user_id).expect(ApiKeys).keys]

    def named(self, api_key: str) -> tuple[ApiKeyView, ...]:
        return self.send(GetApiKeys, api_key=api_key).expect(ApiKeys).keys


def test_a_created_key_is_found_by_name_and_listed_for_its_user_only() -> None:
    keys = Keys()
    created = keys.create("k1", "alice", (Permission.READ,))
    keys.create("k2", "bob")

    assert created.ok and created.data == ApiKeyView("k1", "alice", (Permission.READ,), 1_700_000_000_001)
    assert keys.named("k1") == (created.data,)
    assert keys.of_user("alice") == ["k1"]
    assert keys.of_user("bob") == ["k2"]
    assert keys.named("nope") == ()


def test_a_key_name_is_never_made_twice() -> None:
    keys = Keys()
    keys.create("k1", "alice")

    again = keys.create("k1", "bob")

    assert again.code is ResultCode.INVALID_REQUEST
    assert [k.user_id for k in keys.named("k1")] == ["alice"]


def test_a_revoked_key_is_gone_and_revoking_it_again_finds_nothing() -> None:
    keys = Keys()
    keys.create("k1", "alice")

    assert keys.send(RevokeApiKey, api_key="k1").ok
    assert keys.named("k1") == () and keys.of_user("alice") == []
    assert keys.send(RevokeApiKey, api_key="k1").code is ResultCode.UNKNOWN_API_KEY_TO_REVOKE


def test_a_user_holds_at_most_the_allowed_number_of_keys() -> None:
    keys = Keys()
    for n in range(MAX_API_KEYS_PER_USER):
        assert keys.create(f"k{n}", "alice").ok

    refused = keys.create("one-more", "alice")

    assert refused.code is ResultCode.INVALID_REQUEST
    assert len(keys.of_user("alice")) == MAX_API_KEYS_PER_USER
    assert keys.create("for-bob", "bob").ok


def test_keys_survive_a_snapshot_round_trip_through_the_snapshot_encoding() -> None:
    keys = Keys()
    keys.create("k1", "alice", (Permission.READ,))
    keys.create("k2", "alice")
    keys.send(RevokeApiKey, api_key="k1")

    state = wire.unpack(wire.pack(keys.core.to_state()), dict)
    restored = Keys(BalanceCore.from_state(state))

    assert restored.core.api_keys == keys.core.api_keys
    assert restored.of_user("alice") == ["k2"]


def test_a_snapshot_from_before_keys_existed_loads_with_none() -> None:
    state = BalanceCore().to_state()
    del state["api_keys"]

    assert BalanceCore.from_state(state).api_keys == {}
