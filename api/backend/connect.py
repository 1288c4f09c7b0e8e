"""Turns settings into the models the graph calls and starts the embedded model when needed."""

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx
import httpx2
import openai

from api.backend.embedded import MODEL_ALIAS, LocalModelServer, bundled_model_path
from api.settings import ConfigurationError, Settings
from api.telemetry.logs import bare_url
from graph import (
    LlamaCppCounter,
    Models,
    ModelSpec,
    TiktokenCounter,
    TokenCounter,
    openai_chat_model,
)
from graph.calibration import Calibration
from graph.ledger import NODES, NodeName
from graph.models import StructuredMode, StructuredOutput, TokenCapParam

log = logging.getLogger(__name__)

LOCAL_API_KEY = "sk-local"


@dataclass(frozen=True)
class Backend:
    """A reachable backend: its models, a token counter and where it lives."""

    models: Models
    counter: TokenCounter
    base_url: str
    embedded: bool
    api_key: str | None = None
    http_client: openai.DefaultAsyncHttpxClient | None = None
    """The models' connections; whoever holds the backend closes it with ``aclose``."""
    probe_client: httpx.AsyncClient | None = None
    """For readiness probes (and tokenizing); closed by whoever opened it."""

    async def aclose(self) -> None:
        if self.http_client is not None:
            await self.http_client.aclose()

    async def ping(self, timeout_s: float = 3.0) -> bool:
        """True if the backend answers ``GET /models``."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url.rstrip('/')}/models"
        try:
            if self.probe_client is not None:  # long-lived: no new TLS context on the loop per probe
                status = (await self.probe_client.get(url, headers=headers, timeout=timeout_s)).status_code
            else:
                async with httpx.AsyncClient(timeout=timeout_s) as client:
                    status = (await client.get(url, headers=headers)).status_code
        except httpx.HTTPError:
            return False
        return status == 200


def _is_openai(base_url: str) -> bool:
    return urlparse(base_url).hostname == "api.openai.com"


def _api_key(settings: Settings, embedded: bool) -> str | None:
    if embedded:
        return LOCAL_API_KEY
    return settings.llm_api_key.get_secret_value() if settings.llm_api_key else None


def build_models(
    settings: Settings,
    base_url: str,
    embedded: bool,
    http_client: openai.DefaultAsyncHttpxClient,
    *,
    llama_cpp_python: bool,
) -> Models:
    key = _api_key(settings, embedded)
    # One structured-output mode per model name, so roles that share a model learn together;
    # one calibration for all, so a model not heard from yet starts from what the others showed.
    modes: dict[str, StructuredMode] = {}
    calibration = Calibration()

    def structured(name: str) -> StructuredMode:
        if name not in modes:
            if settings.llm_structured_output == "auto":
                first: StructuredOutput = "json_object" if embedded else "json_schema"
                modes[name] = StructuredMode(first, adaptive=True)
            else:
                modes[name] = StructuredMode(settings.llm_structured_output)
        return modes[name]

    cap: TokenCapParam
    if settings.llm_max_tokens_param == "auto":
        cap = "max_completion_tokens" if _is_openai(base_url) else "max_tokens"
    else:
        cap = settings.llm_max_tokens_param
    # llama-cpp-python reports no usage on streamed calls: stream only where usage stays exact.
    stream = settings.llm_stream if settings.llm_stream is not None else not llama_cpp_python

    def spec(role: NodeName) -> ModelSpec:
        name = MODEL_ALIAS if embedded else settings.model_for(role)
        if not name:
            raise ConfigurationError(
                f"LLM_MODEL (or {role.upper()}_MODEL) must be set when LLM_BASE_URL is set"
            )
        chat = openai_chat_model(
            model=name,
            base_url=base_url,
            api_key=key or "not-set",
            timeout_s=settings.llm_timeout_s,
            http_client=http_client,
        )
        return ModelSpec(
            chat=chat,
            name=name,
            structured=structured(name),
            token_cap_param=cap,
            stream=stream,
            calibration=calibration,
        )

    return Models(
        planner=spec("planner"),
        worker=spec("worker"),
        critic=spec("critic"),
        synthesizer=spec("synthesizer"),
    )


def check_settings(settings: Settings) -> None:
    """Fail early, with a message that says what to change, on settings that cannot work."""
    if settings.embedded:
        path = settings.local_model_path or bundled_model_path()
        if not path.is_file():
            raise ConfigurationError(f"LOCAL_MODEL_PATH does not name a file: {path}")
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigurationError(
                "llama-cpp-python is not installed: run `make install`, or set LLM_BASE_URL"
            )
        return
    missing = [role for role in NODES if not settings.model_for(role)]
    if missing:
        raise ConfigurationError(
            f"LLM_MODEL (or {missing[0].upper()}_MODEL) must be set when LLM_BASE_URL is set"
        )


async def is_llama_cpp_python(client: httpx.AsyncClient, base_url: str) -> bool:
    """True if the backend answers llama-cpp-python's own tokenize endpoint (no tokens spent)."""
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        response = await client.post(f"{root}/extras/tokenize/count", json={"input": "x"}, timeout=3.0)
        return response.status_code == 200 and isinstance(response.json().get("count"), int)
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


@asynccontextmanager
async def _embedded_server(settings: Settings, stop: asyncio.Event | None) -> AsyncIterator[str | None]:
    if not settings.embedded:
        yield None
        return
    async with LocalModelServer(
        settings.local_model_path,
        n_ctx=settings.local_model_ctx,
        startup_s=settings.local_model_startup_s,
        log_dir=settings.data_dir,
        stop=stop,
    ) as server:
        yield server.base_url


def model_http_client(keepalive_connections: int) -> openai.DefaultAsyncHttpxClient:
    """The one HTTP client of every model call: the SDK's, keeping ``keepalive_connections``
    (``LLM_KEEPALIVE_CONNECTIONS``) idle connections rather than its 100. Before every request
    the pool checks each idle connection's socket; against a fast backend at 16 clients that
    check was 29% of the event loop's time (py-spy, docs/performance.md)."""
    limits = httpx2.Limits(
        max_connections=openai.DEFAULT_CONNECTION_LIMITS.max_connections,
        max_keepalive_connections=keepalive_connections,
    )
    return openai.DefaultAsyncHttpxClient(limits=limits)


@asynccontextmanager
async def open_backend(settings: Settings, *, stop: asyncio.Event | None = None) -> AsyncIterator[Backend]:
    """Yield a ready backend; the embedded server (if any) stops when the block exits.

    Setting ``stop`` while the embedded model starts abandons the start (``StartupStopped``).
    """
    check_settings(settings)
    async with _embedded_server(settings, stop) as local_url:
        base_url = local_url or settings.llm_base_url or ""
        embedded = local_url is not None
        async with (
            httpx.AsyncClient() as client,
            model_http_client(settings.llm_keepalive_connections) as http_client,
        ):
            llama = embedded or await is_llama_cpp_python(client, base_url)
            if llama and not embedded:
                log.info(
                    "the backend is llama-cpp-python's server: its tokenizer counts the question, "
                    "and calls are not streamed unless LLM_STREAM=true (it reports no usage on streams)",
                    extra={"base_url": bare_url(base_url)},
                )
            models = build_models(settings, base_url, embedded, http_client, llama_cpp_python=llama)
            fallback = TiktokenCounter(models.synthesizer.name)
            counter: TokenCounter = LlamaCppCounter(base_url, client, fallback) if llama else fallback
            yield Backend(
                models=models,
                counter=counter,
                base_url=base_url,
                embedded=embedded,
                api_key=_api_key(settings, embedded),
                http_client=http_client,
                probe_client=client,
            )
