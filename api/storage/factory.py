"""Settings -> the run store and the broker they name: SQLite and no broker for one process,
Postgres (and Redis) for replicas."""

from api.settings import Settings
from api.storage.broker import Broker, RedisBroker
from api.storage.interface import RunStore
from api.storage.postgres import PostgresRunStore
from api.storage.sqlite import SQLiteRunStore


async def open_store(settings: Settings) -> RunStore:
    """Open (and migrate) the store; raises StorageUnavailable if it cannot."""
    store: PostgresRunStore | SQLiteRunStore
    if settings.database_url:
        store = PostgresRunStore(settings.database_url, pool_size=settings.database_pool_size)
    else:
        store = SQLiteRunStore(settings.data_dir / "reasoner.db")
    await store.open()
    return store


def open_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        return RedisBroker(settings.redis_url, settings.redis_prefix)
    return Broker()
