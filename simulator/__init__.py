"""A market simulator: market makers and takers that trade on a running openbell through its public API.

`python run.py simulate --url http://127.0.0.1:8000` funds its own users through the onramp, then each
market runs a loop of steps: its mid follows a random walk, makers quote a ladder around it (post-only,
skewed by their inventory, cancelled and replaced as the mid moves), takers send market and IOC orders in
bursts. At the end it cancels what its makers still have open and checks, through the API, that every one of
its users holds exactly its deposits plus its fills less their fees.

Modules: `session` (the HTTP and WebSocket transport, and the one place that knows how a request says who
sends it), `grid` (a market's tick and lot grid, as the API describes it), `agents` (what makers and takers
decide), `accounting` (fills and the balance check), `stats` (progress and summary), `runner` (start-up and
the loops). May import `core/` for result code names only; everything else it learns over HTTP.

Reproducibility: see `runner`'s docstring.
"""
