"""reasoner as an MCP server, for MCP clients (desktop assistants, IDEs, agent SDKs): the tools
``reason`` and ``get_run``, over streamable HTTP at ``/mcp`` (behind the same API keys and
tenant rules as every route) and over stdio (``reasoner mcp``).

``reason`` runs a question as ``POST /v1/reason`` does and sends the run's steps as MCP progress
notifications while it works; cancelling the MCP request cancels the run. Built on the official
``mcp`` SDK's MCPServer.
"""

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http.auth import bearer_caller, invalid_key
from api.http.errors import error_response
from api.runs.errors import RunServiceError
from api.runs.request import Effort, ReasonRequest
from api.runs.service import RunService
from api.runs.tenants import Caller, Tenants
from api.storage.interface import Event, RunNotFound
from graph.events import (
    CRITIQUE,
    PLAN,
    STAGE,
    TASK_COMPLETED,
    TASK_FAILED,
    TOOL_RESULT,
    CritiqueMade,
    PlanMade,
    StageStarted,
    TaskCompleted,
    TaskFailed,
    ToolResult,
)

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]


def progress_message(event: Event) -> str | None:
    """The run's step an MCP client is told of, in a few words; None for the rest."""
    if event.event == STAGE:
        stage = cast(StageStarted, event.data)
        return stage["stage"] + (f" (round {stage['round']})" if stage["round"] else "")
    if event.event == PLAN:
        return f"planned {len(cast(PlanMade, event.data)['subtasks'])} sub-question(s)"
    if event.event == TASK_COMPLETED:
        return f"{cast(TaskCompleted, event.data)['task_id']} answered"
    if event.event == TASK_FAILED:
        failed = cast(TaskFailed, event.data)
        return f"{failed['task_id']} failed: {failed['error']}"
    if event.event == TOOL_RESULT:
        tool = cast(ToolResult, event.data)
        return f"{tool['task_id']} called {tool['name']}"
    if event.event == CRITIQUE:
        critique = cast(CritiqueMade, event.data)
        sent_back = [v["task_id"] for v in critique["verdicts"] if v["verdict"] == "revise"]
        return f"reviewed: {', '.join(sent_back) + ' sent back' if sent_back else 'all accepted'}"
    return None


def mcp_server(service: Callable[[], RunService], caller: Callable[[Context], Caller]) -> MCPServer:
    """The server; ``service`` gives the running service, ``caller`` the tenant of a request."""
    server = MCPServer(
        "reasoner",
        instructions="Answers hard questions with a planner, parallel workers, a critic and a "
        "synthesizer; every answer comes with the tokens it cost.",
        log_level="WARNING",
    )

    @server.tool()
    async def reason(
        question: str,
        ctx: Context,
        reasoning_effort: Effort | None = None,
        token_budget: int | None = None,
        cost_budget_usd: float | None = None,
    ) -> CallToolResult:
        """Answer a complex question: it is split into sub-questions, answered, checked and
        written up. Returns the answer, and its usage (input, output and reasoning tokens, cost)."""
        try:
            request = ReasonRequest(
                question=question,
                reasoning_effort=reasoning_effort,
                token_budget=token_budget,
                cost_budget_usd=cost_budget_usd,
            )
            running = service()
            run_id = (await running.runner.submit(request, tenant=caller(ctx).tenant)).run_id
        except (ValidationError, RunServiceError) as exc:
            raise ToolError(exc.message if isinstance(exc, RunServiceError) else str(exc)) from None
        try:
            step = 0
            async for event in running.lookup.follow(run_id):
                message = progress_message(event) if event is not None else None
                if message is not None:
                    step += 1
                    await ctx.report_progress(step, None, message)
            result = await running.lookup.wait(run_id)
        except asyncio.CancelledError:  # the client cancelled its request: so is the run
            with suppress(RunServiceError):  # it had ended meanwhile
                await asyncio.shield(running.runner.cancel_anywhere(run_id))
            raise
        structured: dict[str, Any] = {
            "run_id": result["run_id"],
            "status": result["status"],
            "answer": result["answer"],
            "usage": result["usage"],
            "by_node": result["by_node"],
        }
        error = result["error"]
        text = result["answer"] or (error["message"] if error is not None else "")
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=structured,
            is_error=result["status"] not in ("completed", "partial"),
        )

    @server.tool()
    async def get_run(run_id: str, ctx: Context) -> dict[str, Any]:
        """A run's state by id: its status, and its result once it has one."""
        try:
            record = await service().lookup.get(run_id, caller(ctx))
        except RunNotFound:
            raise ToolError(f"no run {run_id!r}") from None
        return {"run_id": record.id, "status": record.status, "result": record.result}

    return server


def mcp_app(server: MCPServer, tenants: Tenants, loopback: bool) -> ASGIApp:
    """The server's streamable HTTP app, for ``app.mount("/mcp", …)``: a request without a known
    API key (when keys are required) gets the service's 401. A service on loopback without keys
    also checks Host against DNS rebinding, as the SDK recommends."""
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=loopback and not tenants.enabled, allowed_hosts=LOOPBACK_HOSTS
    )
    app: Starlette = server.streamable_http_app(streamable_http_path="/", transport_security=security)
    return _RequireKey(app, tenants)


def http_caller(tenants: Tenants) -> Callable[[Context], Caller]:
    """The tenant of an HTTP request's key (``_RequireKey`` has checked it)."""

    def caller(ctx: Context) -> Caller:
        known = bearer_caller(tenants, (ctx.headers or {}).get("authorization", ""))
        if known is None:
            raise ToolError("a valid API key is required")
        return known

    return caller


class _RequireKey:
    def __init__(self, app: ASGIApp, tenants: Tenants) -> None:
        self.app = app
        self.tenants = tenants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if bearer_caller(self.tenants, authorization) is None:
                refused = invalid_key()
                response = error_response(refused.status, refused.body, refused.headers)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)
