"""What the network edges (`http/`, `ws/`, and the cluster's API and WebSocket processes) share: the engine
they talk to (`client.EngineClient`, which the in-process engine and the Redis client both implement),
who is calling (`identity`), and what an error looks like to a client (`errors`: one status table, one
error type).

May import `openbell.core` only; `http/` and `ws/` import this package and never each other.
"""
