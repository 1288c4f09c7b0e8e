"""Storage: the RunStore contract, its SQLite and Postgres dialects, checkpoints and the broker.
Knows no HTTP."""
