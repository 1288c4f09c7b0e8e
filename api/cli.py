"""The command line: ``reasoner ask "question"`` and ``reasoner serve``."""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from api.backend.connect import check_settings, open_backend
from api.backend.embedded import LocalModelError
from api.backend.prices import load_prices
from api.backend.tools import connected_tools
from api.runs.errors import RunServiceError
from api.runs.request import ReasonRequest
from api.runs.service import run_service
from api.runs.tenants import load_tenants
from api.settings import ConfigurationError, Settings
from api.storage.factory import open_store
from api.storage.interface import Event, RunStore, StorageUnavailable
from api.telemetry.logs import configure_logging
from api.telemetry.otel import recorded, tree
from graph import Result
from graph.events import (
    CRITIQUE,
    PLAN,
    PLAN_TASK,
    STAGE,
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_STARTED,
    TOOL_CALLED,
    TOOL_RESULT,
    CritiqueMade,
    PlanMade,
    PlanTask,
    StageStarted,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    ToolCalled,
    ToolResult,
)

T = TypeVar("T")


def _short(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _show(event: Event) -> None:
    """Print one step of the run as it happens."""
    if event.event == STAGE:
        stage = cast(StageStarted, event.data)
        if stage["stage"] in ("reviewing", "writing"):
            print(f"{stage['stage']}…")
    elif event.event == PLAN_TASK:
        task = cast(PlanTask, event.data)["task"]
        after = f" (after {', '.join(task['depends_on'])})" if task["depends_on"] else ""
        print(f"plan {task['id']}{after}: {_short(task['question'])}")
    elif event.event == PLAN:
        print(f"plan complete: {len(cast(PlanMade, event.data)['subtasks'])} sub-question(s)")
    elif event.event == TASK_STARTED:
        started = cast(TaskStarted, event.data)
        given = f", given {', '.join(started['inputs'])}" if started["inputs"] else ""
        print(f"  worker {started['task_id']} (attempt {started['attempt']}{given}) started")
    elif event.event == TASK_COMPLETED:
        done = cast(TaskCompleted, event.data)
        tokens = done["usage"]["total_tokens"]
        print(f"  worker {done['task_id']} done, {tokens} tokens: {_short(done['answer'], 70)}")
    elif event.event == TASK_FAILED:
        failed = cast(TaskFailed, event.data)
        print(f"  worker {failed['task_id']} failed: {failed['error']}")
    elif event.event == TOOL_CALLED:
        called = cast(ToolCalled, event.data)
        print(f"    {called['task_id']} calls {called['name']} {_short(called['arguments'], 70)}")
    elif event.event == TOOL_RESULT:
        tool = cast(ToolResult, event.data)
        said = f"error: {tool['error']}" if tool["error"] is not None else tool["result"]
        print(f"    {tool['task_id']} {tool['name']} → {_short(said, 70)} ({tool['duration_ms']:.0f} ms)")
    elif event.event == CRITIQUE:
        for verdict in cast(CritiqueMade, event.data)["verdicts"]:
            note = f": {_short(verdict['feedback'], 60)}" if verdict["feedback"] else ""
            print(f"critic: {verdict['task_id']} {verdict['verdict']}{note}")
    sys.stdout.flush()


def token_table(result: Result) -> str:
    """Tokens per node; a cost column where the models' prices are known."""
    priced = result["usage"].get("cost_usd") is not None
    rows = [
        f"{'node':<12}{'calls':>6}{'prompt':>9}{'completion':>12}{'total':>9}"
        + ("   cost USD" if priced else "")
    ]
    for node, u in result["by_node"].items():
        cost = u.get("cost_usd")
        rows.append(
            f"{node:<12}{u['calls']:>6}{u['prompt_tokens']:>9}"
            f"{u['completion_tokens']:>12}{u['total_tokens']:>9}"
            + (f"{cost:>11.6f}" if priced and cost is not None else "")
        )
    usage = result["usage"]
    note = "estimated" if usage["estimated"] else "exact, as reported by the backend"
    total_cost = f" · cost ${usage['cost_usd']:.6f}" if priced else ""
    rows.append(
        f"input {usage['input_tokens']} · output {usage['output_tokens']} · "
        f"reasoning {usage['reasoning_tokens']} · total {usage['total_tokens']}{total_cost} ({note})"
    )
    return "\n".join(rows)


async def _open_store(settings: Settings) -> RunStore:
    try:
        return await open_store(settings)
    except StorageUnavailable as exc:
        where = "DATABASE_URL" if settings.database_url else f"DATA_DIR {settings.data_dir}"
        raise ConfigurationError(f"cannot use {where}: {exc}") from exc


async def _ask(settings: Settings, request: ReasonRequest, as_json: bool) -> int:
    store = await _open_store(settings)
    try:
        async with open_backend(settings) as backend, connected_tools(settings) as mcp:
            service = run_service(settings, backend, store, mcp=mcp)
            runner, lookup = service.runner, service.lookup
            await runner.start(take_up=False)  # a service on the same DATA_DIR does that
            try:
                run_id = (await runner.submit(request)).run_id
                async for event in lookup.follow(run_id):
                    if event is not None and not as_json:
                        _show(event)
                result = await lookup.wait(run_id)
            finally:  # however it ends (Ctrl-C, a closed pipe), the run is stored finished
                await runner.shutdown(0, leave_to_resume=False)
    finally:
        await store.close()
    if as_json:
        print(json.dumps(result, indent=2))
    elif result["error"] is None:
        print(f"\nstatus: {result['status']}")
        for fallback in result["fallbacks"]:
            print(f"fallback ({fallback['node']}): {fallback['detail']}")
        print(f"\n{result['answer']}\n")
        print(token_table(result))
    error = result["error"]
    if error is not None:
        print(f"error: {error['kind']}: {error['message']}", file=sys.stderr)
        return 1
    return 0


async def _mcp(settings: Settings) -> int:
    """reasoner as an MCP server over stdio: the service runs in this process, as for ``ask``."""
    from api.http.mcp import mcp_server
    from api.runs.tenants import Caller

    store = await _open_store(settings)
    try:
        async with open_backend(settings) as backend, connected_tools(settings) as mcp:
            service = run_service(settings, backend, store, mcp=mcp)
            await service.runner.start(take_up=False)
            try:
                await mcp_server(lambda: service, lambda ctx: Caller()).run_stdio_async()
            finally:
                await service.runner.shutdown(0, leave_to_resume=False)
    finally:
        await store.close()
    return 0


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    from api.http.server import serve

    check_settings(settings)
    load_prices(settings.prices_file)
    load_tenants(settings.keys, settings.api_keys_file)

    async def can_store() -> None:
        await (await _open_store(settings)).close()

    _run(settings, can_store())
    serve(settings.model_copy(update={"host": host or settings.host, "port": port or settings.port}))
    return 0


def _run(settings: Settings, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the event loop EVENT_LOOP names (the one `reasoner serve` uses too)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if settings.event_loop != "asyncio":
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            if settings.event_loop == "uvloop":
                main.close()
                raise ConfigurationError("EVENT_LOOP=uvloop, but uvloop is not installed") from None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasoner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="answer one question and show the token breakdown")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the result object as JSON")
    ask.add_argument("--max-subtasks", type=int)
    ask.add_argument("--max-revisions", type=int)
    ask.add_argument("--effort", choices=["low", "medium", "high"])
    ask.add_argument(
        "--trace", action="store_true", help="print the run's OpenTelemetry spans as a tree (to stderr)"
    )
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    commands.add_parser("mcp", help="serve reason and get_run to an MCP client over stdio")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        if args.command == "serve":  # the service's log is its output, as containers expect
            configure_logging(settings.log_level, payloads=settings.log_payloads, stream=sys.stdout)
        else:  # stdout is the answer
            configure_logging("warning", payloads=settings.log_payloads)
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        if args.command == "mcp":  # stdout is the protocol's
            return _run(settings, _mcp(settings))
        request = ReasonRequest(
            question=args.question,
            max_subtasks=args.max_subtasks,
            max_revisions=args.max_revisions,
            reasoning_effort=args.effort,
        )
        if not args.trace:
            return _run(settings, _ask(settings, request, args.json))
        with recorded() as spans:
            code = _run(settings, _ask(settings, request, args.json))
        print(tree(spans.get_finished_spans()), file=sys.stderr)
        return code
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"error: invalid {where or 'setting'}: {first['msg']}", file=sys.stderr)
    except (ConfigurationError, LocalModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except RunServiceError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`reasoner ask … | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 2


if __name__ == "__main__":
    sys.exit(main())
