"""What replicas take of the services they share, for the replicas bench: Postgres connections by
replica and their backends' CPU, the messages on the deployment's Redis channels, and Postgres'
connection limits."""

import threading
import time
from collections import Counter
from typing import Any

import psycopg
import redis

from tests.bench.harness import proc_cpu_s
from tests.support.services import ADMIN_URL, REDIS_URL


class Sampler(threading.Thread):
    """Every 0.1 s: the database's connections in pg_stat_activity by application_name (all,
    and those not idle) and the CPU of their backends; and every message on the deployment's
    Redis channels, counted per channel."""

    def __init__(self, database: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.name_of_db = database.rsplit("/", 1)[1].split("?", 1)[0]
        self.prefix = prefix
        self.samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self.backend_cpu: dict[int, tuple[float, float]] = {}
        """Backend pid → (CPU seconds when first seen, when last seen)."""
        self.messages: Counter[str] = Counter()
        self.stop = threading.Event()
        self.client = redis.Redis.from_url(REDIS_URL)  # kept: its pool holds the subscription
        self.pubsub = self.client.pubsub()
        self.pubsub.psubscribe(f"{prefix}:*")
        confirmed = self.pubsub.get_message(timeout=5.0)  # subscribed before the measurement starts
        assert confirmed is not None and confirmed["type"] == "psubscribe", confirmed
        self.listener = threading.Thread(target=self._listen, daemon=True)
        self.listener.start()
        self.start()

    def _listen(self) -> None:
        while not self.stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "pmessage":
                self.messages[message["channel"].decode().removeprefix(f"{self.prefix}:")] += 1
        self.pubsub.close()
        self.client.close()

    def run(self) -> None:
        query = (
            "SELECT application_name, pid, state FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            while not self.stop.is_set():
                by_app: dict[str, tuple[int, int]] = {}
                for app, pid, state in conn.execute(query, (self.name_of_db,)).fetchall():
                    total, busy = by_app.get(app, (0, 0))
                    by_app[app] = (total + 1, busy + (state != "idle"))
                    used = proc_cpu_s(pid)
                    first = self.backend_cpu.get(pid, (used, used))[0]
                    self.backend_cpu[pid] = (first, used)
                self.samples.append((time.perf_counter(), by_app))
                time.sleep(0.1)

    def finish(self) -> None:
        self.stop.set()
        self.join(10)
        self.listener.join(10)

    def figures(self, runs: int, replicas: int) -> dict[str, Any]:
        apps = sorted({app for _, by_app in self.samples for app in by_app})
        peak = {app: max(by_app.get(app, (0, 0))[0] for _, by_app in self.samples) for app in apps}
        publishes = sum(self.messages.values())
        return {
            "pg_peak_connections": max(sum(c for c, _ in by_app.values()) for _, by_app in self.samples),
            "pg_peak_busy": max(sum(b for _, b in by_app.values()) for _, by_app in self.samples),
            "pg_peak_by_replica": peak,
            "pg_backend_cpu_ms_per_run": sum(last - first for first, last in self.backend_cpu.values())
            / runs
            * 1000,
            "redis_messages": dict(self.messages),
            "redis_publishes_per_run": publishes / runs,
            "redis_deliveries_per_run": publishes * replicas / runs,
        }


def postgres_limits() -> dict[str, int]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, setting::int FROM pg_settings "
            "WHERE name IN ('max_connections', 'superuser_reserved_connections')"
        ).fetchall()
    return {str(name): int(value) for name, value in rows}
