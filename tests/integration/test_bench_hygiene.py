"""`make bench` keeps its temporary data in a temporary directory and removes it."""

import tempfile
from pathlib import Path

import httpx

from tests.bench.harness import RESULTS, service
from tests.stub_backend import StubBackend


def test_the_bench_service_leaves_nothing_behind(stub: StubBackend) -> None:
    before_results = set(RESULTS.iterdir())
    temp = Path(tempfile.gettempdir())
    before_temp = set(temp.glob("reasoner-bench-*"))
    with service(stub.base_url.removesuffix("/v1")) as (url, _):
        during = set(temp.glob("reasoner-bench-*")) - before_temp
        assert httpx.post(f"{url}/v1/reason", json={"question": "Q?"}, timeout=30).status_code == 200
        assert any((d / "reasoner.db").exists() for d in during), (
            "the service's data is in the temporary directory"
        )
    assert set(RESULTS.iterdir()) == before_results
    assert set(temp.glob("reasoner-bench-*")) == before_temp
