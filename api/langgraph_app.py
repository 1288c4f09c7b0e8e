"""The graph for `langgraph dev` and LangGraph Studio (langgraph.json): the service's graph around
the models the settings name; each run's parameters come as the run's context.

Needs ``LLM_BASE_URL``: the LangGraph server's venv has no embedded model (no llama-cpp-python).
LangGraph's server imports this module in a worker thread, off its event loop.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from pydantic import GetCoreSchemaHandler
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import CoreSchema, core_schema

from api.backend.connect import build_models, check_settings, is_llama_cpp_python, model_http_client
from api.backend.prices import load_prices
from api.backend.tools import offered_tools
from api.settings import ConfigurationError, Settings, get_settings
from graph import (
    CallRecord,
    Graph,
    LlamaCppCounter,
    Models,
    Prices,
    RunContext,
    TiktokenCounter,
    TokenCounter,
    build_graph,
)
from graph.budget import Budget
from graph.context import always
from graph.journal import Journal
from graph.tokens import estimate
from graph.tools import Tools


async def _is_llama_cpp_python(base_url: str) -> bool:
    async with httpx.AsyncClient() as client:
        return await is_llama_cpp_python(client, base_url)


def backend_from_settings(settings: Settings) -> tuple[Models, TokenCounter]:
    """The models of each role, and what counts a question's tokens, as ``reasoner serve`` builds
    them from the same settings."""
    if settings.embedded:
        raise ConfigurationError(
            "langgraph dev needs LLM_BASE_URL (and LLM_MODEL, or a model per role): its venv has no "
            "embedded model (README, LangGraph Studio)"
        )
    check_settings(settings)
    base_url = settings.llm_base_url or ""
    llama = asyncio.run(_is_llama_cpp_python(base_url))
    # Open for the life of the process, as the service's are for its own.
    http_client = model_http_client(settings.llm_keepalive_connections)
    models = build_models(settings, base_url, False, http_client, llama_cpp_python=llama)
    fallback = TiktokenCounter(models.synthesizer.name)
    counter: TokenCounter = LlamaCppCounter(base_url, httpx.AsyncClient(), fallback) if llama else fallback
    return models, counter


class _Opaque:
    """A field pydantic takes as it is and leaves out of the JSON schema (with SkipJsonSchema)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.any_schema()


_OPAQUE = _Opaque()


def context_schema(settings: Settings) -> type[RunContext]:
    """RunContext with the settings' defaults, as admission fills it for a request that sets
    nothing, and the prices of ``PRICES_FILE``. The run's own accounts (budget, ledger, journal)
    start empty and are left out of its JSON schema, which LangGraph serves to Studio and filters
    each run's context by; so are its fence (LangGraph's server holds no leases: it always may
    call) and its tools (the service's, ``TOOLS``)."""
    prices = load_prices(settings.prices_file)
    tools = offered_tools(settings, embedded=settings.embedded)

    @dataclass(frozen=True)
    class Context(RunContext):
        max_subtasks: int = min(settings.max_subtasks, settings.subtasks_limit)
        max_revisions: int = min(settings.max_revisions, settings.revisions_limit)
        max_concurrency: int = settings.max_concurrency
        max_output_tokens: int = settings.max_output_tokens
        tools: Annotated[Tools, _OPAQUE, SkipJsonSchema()] = field(default_factory=lambda: dict(tools))
        max_tool_calls: int = settings.max_tool_calls
        tool_timeout_s: float = settings.tool_timeout_s
        tool_result_chars: int = settings.tool_result_chars
        timeout_s: float = settings.llm_timeout_s
        max_attempts: int = settings.llm_max_attempts
        retry_initial_s: float = settings.llm_retry_initial_s
        prices: Prices = field(default_factory=lambda: dict(prices))
        budget: Annotated[Budget, _OPAQUE, SkipJsonSchema()] = field(default_factory=Budget)
        ledger: Annotated[list[CallRecord], _OPAQUE, SkipJsonSchema()] = field(default_factory=list)
        journal: Annotated[Journal, _OPAQUE, SkipJsonSchema()] = field(default_factory=Journal)
        fence: Annotated[Callable[[], bool], _OPAQUE, SkipJsonSchema()] = always

    return Context


def make_graph(settings: Settings) -> Graph:
    """The compiled graph, its models, question counter and context defaults from ``settings``."""
    # The nodes estimate prompts with tiktoken, which reads its vocabulary file on first use: read
    # it now, off the event loop (`langgraph dev` fails a run that blocks the loop).
    estimate("")
    models, counter = backend_from_settings(settings)
    return build_graph(models, counter=counter).copy(update={"context_schema": context_schema(settings)})


graph = make_graph(get_settings())
