"""``GET /metrics``: the Prometheus text format, with tokens and cost by node equal to the sums
of the runs' own ``by_node``, calls by outcome (a retried call counted as such), and the key
rule (with API_KEYS, a key is needed unless METRICS_PUBLIC)."""

import json
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import ROLES, Fault, StubBackend, model_name

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(http: httpx.Client) -> Samples:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for found, value in samples[name] if labels.items() <= found.items())


def test_tokens_and_cost_by_node_are_the_sums_of_the_runs(
    stub: StubBackend, settings: Settings, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({model_name("worker"): {"input": 1.0, "output": 4.0}}))
    stub.inject("worker", Fault(status=503))  # one worker call is retried
    priced = settings.model_copy(update={"prices_file": prices})
    with (
        Service(priced, stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=60) as http,
    ):
        results = [http.post("/v1/reason", json={"question": f"Question {i}?"}).json() for i in range(3)]
        samples = scrape(http)

    assert total(samples, "reasoner_runs_total", status="completed") == 3
    for role in ROLES:
        for kind in ("prompt", "completion"):
            expected = sum(r["by_node"][role][f"{kind}_tokens"] for r in results)
            assert total(samples, "reasoner_tokens_total", node=role, kind=kind) == expected, (role, kind)
        calls = sum(r["by_node"][role]["calls"] for r in results)
        assert total(samples, "reasoner_model_calls_total", node=role) == calls
    worker_cost = sum(r["by_node"]["worker"]["cost_usd"] for r in results)
    assert total(samples, "reasoner_cost_usd_total", node="worker") == pytest.approx(worker_cost)
    assert not [labels for labels, _ in samples["reasoner_cost_usd_total"] if labels["node"] == "planner"], (
        "no price, no cost series"
    )
    assert total(samples, "reasoner_model_calls_total", outcome="retried") == 1
    assert total(samples, "reasoner_model_call_retries_total") == 1
    assert total(samples, "reasoner_run_duration_seconds_count") == 3
    assert samples["reasoner_active_runs"] == [({}, 0.0)]
    labels = {key for name in samples for found, _ in samples[name] for key in found}
    assert labels <= {"status", "node", "model", "outcome", "kind", "le"}, "bounded labels only"


def test_with_api_keys_metrics_need_a_key_unless_public(stub: StubBackend, settings: Settings) -> None:
    secured = settings.model_copy(update={"api_keys": SecretStr("k-1")})
    with Service(secured, stub_backend(stub)) as service:
        assert httpx.get(f"{service.url}/metrics").status_code == 401
        keyed = httpx.get(f"{service.url}/metrics", headers={"Authorization": "Bearer k-1"})
        assert keyed.status_code == 200
    public = secured.model_copy(update={"metrics_public": True})
    with Service(public, stub_backend(stub)) as service:
        assert httpx.get(f"{service.url}/metrics").status_code == 200
