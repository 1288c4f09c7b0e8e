"""The Postgres store's connection pool, and the check it makes before lending a connection.

A connection the server closed (a restart, an idle timeout) must not be lent: psycopg_pool's
own check sends an empty query first, a round trip before every statement, on the event loop
of a busy process. An idle connection has nothing to read, so its socket says what that round
trip would: readable means the server closed it (or wrote why it will), and only then is the
round trip made, which fails it and has the pool connect anew.
"""

import select
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from api.storage.leases import RECONNECT_S

POOL_TIMEOUT_S = 5.0
"""A request that cannot get a connection this soon gets 503 (the database is gone or busy)."""
CONNECT_TIMEOUT_S = 5

Connection = psycopg.AsyncConnection[dict[str, Any]]


def has_news(fd: int) -> bool:
    """Something (or end of file) waits to be read on ``fd``; asks without waiting."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


async def check_before_lending(conn: Connection) -> None:
    """Raises if ``conn`` is broken; a round trip only when its socket is not quiet."""
    if conn.closed or conn.broken or has_news(conn.fileno()):
        await AsyncConnectionPool.check_connection(conn)


def connection_pool(url: str, size: int) -> AsyncConnectionPool[Connection]:
    return AsyncConnectionPool(
        url,
        open=False,
        min_size=1,
        max_size=size,
        timeout=POOL_TIMEOUT_S,
        reconnect_timeout=RECONNECT_S,  # then it starts over: a database back is reached soon
        check=check_before_lending,
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
            "connect_timeout": CONNECT_TIMEOUT_S,
        },
        name="reasoner",
    )
