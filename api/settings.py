"""Process settings: the one place that reads the environment (and ``.env``)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from graph.ledger import NodeName


class ConfigurationError(RuntimeError):
    """Settings that cannot work; the message says which and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    host: str = Field("127.0.0.1", description="where `make run` / `reasoner serve` listens")
    port: int = Field(8000, ge=1, le=65535, description="the port it listens on")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="JSON lines, one per run; below `info` only the service's own lines"
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="`auto`: uvloop where it is installed, else the standard library's asyncio"
    )
    http_parser: Literal["auto", "httptools", "h11"] = Field(
        "auto", description="`auto`: httptools where it is installed, else h11 (the same limits either way)"
    )
    log_payloads: bool = Field(
        False, description="let the libraries' debug lines through: they print questions, answers and SQL"
    )

    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible backend; unset = start the embedded model"
    )
    llm_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("LLM_API_KEY", "OPENAI_API_KEY"), description="the backend's key"
    )
    llm_model: str | None = Field(None, description="model name (required with `LLM_BASE_URL`)")
    planner_model: str | None = Field(None, description="the planner's model; unset = `LLM_MODEL`")
    worker_model: str | None = Field(None, description="the workers' model; unset = `LLM_MODEL`")
    critic_model: str | None = Field(None, description="the critic's model; unset = `LLM_MODEL`")
    synthesizer_model: str | None = Field(None, description="the synthesizer's model; unset = `LLM_MODEL`")
    llm_structured_output: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto", description="how plans and verdicts are asked for; auto steps down when one is rejected"
    )
    llm_max_tokens_param: Literal["auto", "max_tokens", "max_completion_tokens"] = Field(
        "auto", description="the output cap's name; auto = `max_completion_tokens` for api.openai.com only"
    )
    llm_stream: bool | None = Field(
        None, description="stream the planner and the synthesizer; unset = on unless llama-cpp-python"
    )

    max_subtasks: int = Field(4, ge=1, le=64, description="sub-questions per run, unless a request asks")
    max_revisions: int = Field(1, ge=0, le=5, description="critic → worker rounds, unless a request asks")
    subtasks_limit: int = Field(16, ge=1, le=64, description="hard cap, whatever a request asks")
    revisions_limit: int = Field(3, ge=0, le=10, description="hard cap, whatever a request asks")
    max_concurrency: int = Field(8, ge=1, le=256, description="worker calls in flight at once within a run")
    max_output_tokens: int = Field(512, ge=16, le=65536, description="output cap sent on every call")
    llm_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="sent on every call, and enforced around it"
    )
    llm_max_attempts: int = Field(
        3, ge=1, le=10, description="attempts per call (only transient errors retry)"
    )
    llm_retry_initial_s: float = Field(0.5, ge=0, le=60, description="first backoff; doubles, with jitter")
    llm_keepalive_connections: int = Field(
        20,
        ge=1,
        le=1000,
        description="idle connections to the backend kept for reuse; each is checked before every call",
    )

    local_model_path: Path | None = Field(
        None, description="any GGUF for the embedded server; unset = the bundled SmolLM2-135M"
    )
    local_model_ctx: int = Field(8192, ge=512, le=131072, description="the embedded model's context size")
    local_model_startup_s: float = Field(
        120.0, gt=0, description="how long the embedded server may take to start"
    )

    tools: str | None = Field(
        None,
        description="comma-separated tools workers may call; unset = all of them (none with the "
        "embedded model), empty = none",
    )
    mcp_servers_file: Path | None = Field(
        None, description="JSON or YAML in MCP clients' shape ({mcpServers: {name: {command|url, ...}}})"
    )
    mcp_connect_timeout_s: float = Field(
        30.0, gt=0, le=600, description="each MCP server must start and list its tools within this"
    )
    max_tool_calls: int = Field(
        4, ge=0, le=64, description="tool calls per task; then the worker must answer"
    )
    tool_timeout_s: float = Field(30.0, gt=0, le=3600, description="longest a tool call may take")
    tool_result_chars: int = Field(
        4000, ge=100, le=1_000_000, description="a tool's result is cut to this before the model reads it"
    )

    max_calls_per_run: int = Field(200, ge=1, le=10_000, description="hard cap on model calls per run")
    max_active_runs: int = Field(16, ge=1, le=1024, description="runs executing at once; more wait queued")
    max_queued_runs: int = Field(1000, ge=0, le=100_000, description="beyond this, new runs get 429")
    run_deadline_s: float = Field(600.0, gt=0, le=86_400, description="longest a run may take")
    max_question_tokens: int = Field(8000, ge=1, le=1_000_000, description="longer questions get 400")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, le=100_000_000, description="larger request bodies get 413, before parsing"
    )
    api_keys: SecretStr | None = Field(None, description="comma-separated; set = /v1 needs a Bearer key")
    api_keys_file: Path | None = Field(
        None, description="YAML or JSON: named keys (or their SHA-256), admins, quotas per key"
    )
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; empty = CORS off")

    data_dir: Path = Field(Path("data"), description="the SQLite run store, instance locks, embedded log")
    prices_file: Path | None = Field(
        None, description="JSON or YAML: model -> USD per million input, cached_input, output tokens"
    )
    metrics_public: bool = Field(False, description="with API_KEYS set, /metrics needs no key")
    database_url: str | None = Field(
        None,
        pattern=r"^postgres(ql)?://",
        description="postgresql://… = runs, events and checkpoints in Postgres, shared by replicas; "
        "unset = one SQLite file in DATA_DIR",
    )
    database_pool_size: int = Field(
        10, ge=2, le=1000, description="Postgres connections per replica, at most"
    )
    redis_url: str | None = Field(
        None,
        pattern=r"^(rediss?|unix)://",
        description="redis://… = live events, wake-ups and cancels cross replicas at once; unset = "
        "replicas poll the database",
    )
    redis_prefix: str = Field(
        "reasoner", min_length=1, max_length=100, description="every Redis channel of this deployment"
    )
    served_model_name: str = Field("reasoner", min_length=1, description="the model id of /v1/models")
    sse_heartbeat_s: float = Field(15.0, gt=0, le=15.0, description="idle time before a heartbeat comment")
    cancel_on_disconnect: bool = Field(False, description="a dropped stream cancels its run")
    shutdown_grace_s: float = Field(20.0, ge=0, description="on SIGTERM, how long runs may finish")
    resume_runs: bool = Field(
        True, description="resume runs a process left unfinished; false = store them as interrupted"
    )
    max_resumes: int = Field(2, ge=0, le=100, description="a run resumed more often than this fails")
    lease_s: float = Field(
        15.0, ge=1, le=3600, description="a run whose process stops renewing it is taken up after this"
    )
    checkpoint_durability: Literal["sync", "async", "exit"] = Field(
        "exit",
        description="when LangGraph writes a run's checkpoint: after every step (sync), while the "
        "next step runs (async), or when the run ends (exit); see docs/operations.md",
    )
    retention_days: float | None = Field(
        None, gt=0, description="delete finished runs older than this; unset = keep them"
    )
    header_timeout_s: float = Field(
        15.0, gt=0, le=3600, description="a connection must send a request's head within this"
    )
    request_body_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a request's body must arrive whole within this of its head"
    )
    max_connections: int = Field(
        1000, ge=1, le=1_000_000, description="open connections beyond this get 503 at once"
    )
    max_connections_per_client: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="open connections from one client address beyond this get 503; unset = a "
        "quarter of MAX_CONNECTIONS (behind a reverse proxy, every client has its address)",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector: set = traces exported to its /v1/traces; unset = tracing off"
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(None, description="the same, used as it is")

    @property
    def embedded(self) -> bool:
        return not self.llm_base_url

    @property
    def keys(self) -> list[str]:
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return [key.strip() for key in raw.split(",") if key.strip()]

    @property
    def tool_names(self) -> list[str] | None:
        """``TOOLS`` as names; None when it is unset."""
        if self.tools is None:
            return None
        return [name.strip() for name in self.tools.split(",") if name.strip()]

    @property
    def origins(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def model_for(self, role: NodeName) -> str | None:
        override: str | None = getattr(self, f"{role}_model")
        return override or self.llm_model


@lru_cache
def get_settings() -> Settings:
    return Settings()
