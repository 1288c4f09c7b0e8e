"""Usage per API key: runs are accounted to a hash of the key that made them (never the key),
and ``GET /v1/usage`` gives each caller its own runs, tokens and cost per day; on SQLite and on
Postgres."""

from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend

ALPHA, BETA = "sk-usage-alpha-4f1c9", "sk-usage-beta-77e0d"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_each_key_sees_its_own_usage(
    kind: str, stub: StubBackend, settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    update: dict[str, object] = {"api_keys": SecretStr(f"{ALPHA},{BETA}")}
    if kind == "postgres":
        update["database_url"] = request.getfixturevalue("database")
    keyed = settings.model_copy(update=update)
    with Service(keyed, stub_backend(stub)) as service:

        def as_key(key: str) -> httpx.Client:
            return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

        with as_key(ALPHA) as alpha, as_key(BETA) as beta:
            spent = [alpha.post("/v1/reason", json={"question": f"Alpha {i}?"}).json() for i in range(2)]
            beta.post("/v1/reason", json={"question": "Beta?"})
            mine, theirs = alpha.get("/v1/usage").json(), beta.get("/v1/usage").json()
            assert (
                alpha.get("/v1/usage", params={"since": "2026-02-01", "until": "2026-01-01"}).status_code
                == 400
            )
            assert httpx.get(f"{service.url}/v1/usage").status_code == 401

    today = datetime.now(UTC).date().isoformat()
    assert mine["key"] == "key-1"
    assert mine["days"] == [
        {
            "day": today,
            "runs": 2,
            "total_tokens": sum(r["usage"]["total_tokens"] for r in spent),
            "cost_usd": None,
        }
    ]
    assert mine["runs"] == 2 and theirs["runs"] == 1
    assert theirs["key"] != mine["key"]
    if kind == "sqlite":
        stored = b"".join(p.read_bytes() for p in tmp_path.glob("reasoner.db*"))
    else:
        with psycopg.connect(request.getfixturevalue("database")) as conn:
            stored = str(conn.execute("SELECT * FROM runs").fetchall()).encode()
    assert ALPHA.encode() not in stored and BETA.encode() not in stored, "keys are never stored"
