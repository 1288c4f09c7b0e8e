"""A scripted OpenAI-compatible chat backend for tests, benchmarks and the hardening suite.

The request's ``model`` names the agent that is calling, one model name per role:

    stub-planner       a plan of N sub-questions (JSON)
    stub-worker        a sub-answer (text), or a calculator call (``tests/support/stub_tools.py``)
    stub-critic        verdicts for the sub-answers it is shown (JSON)
    stub-synthesizer   the final answer (text)

Any other model name gets HTTP 400 (``model_not_found``, recorded as role "unknown") so that a
misrouted call fails loudly instead of being answered as some other agent. The prompts are
never inspected to find the role. To point the service at a stub running on its own
(``python -m tests.stub_backend``, ``make stub``), set one model per role::

    LLM_BASE_URL=http://127.0.0.1:9000/v1
    PLANNER_MODEL=stub-planner WORKER_MODEL=stub-worker
    CRITIC_MODEL=stub-critic SYNTHESIZER_MODEL=stub-synthesizer

Latency (per call, or per worker sub-question), tokens per second (per role), the plan (its
width, or scripted tasks with dependencies), verdicts and faults are set by options, usage is
always reported (also on streamed calls when asked), and every call is recorded (a streamed
one with the time each chunk was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from api.backend.embedded import free_port
from graph.tokens import estimate
from tests.support import stub_tools


@dataclass
class Fault:
    """One scripted misbehaviour, used for the next matching call instead of a normal answer."""

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    raw: str | None = None
    stream_raw: str | None = None
    """For streamed calls: this text is the whole (200, text/event-stream) response."""
    match: str | None = None
    """Only for calls whose last message contains this text."""


@dataclass
class Recorded:
    """One call as the stub answered it. A streamed call is recorded when its first chunk is
    sent; ``finished`` is set again when its stream ends."""

    role: str
    body: dict[str, Any]
    started: float
    finished: float
    prompt_tokens: int
    completion_tokens: int
    status: int
    chunks: list[tuple[float, str]] = field(default_factory=list)
    """For a streamed call: each content chunk's text, with the time it was sent."""
    reply: str = ""
    """The text it answered with (none for a fault)."""


ROLES = ("planner", "worker", "critic", "synthesizer")
UNKNOWN = "unknown"
"""The role recorded for a call whose model names no role (it is answered 400)."""


def model_name(role: str) -> str:
    """The model name that makes the stub answer as ``role``."""
    if role not in ROLES:
        raise ValueError(f"no such role: {role!r} (roles: {', '.join(ROLES)})")
    return f"stub-{role}"


MODEL_NAMES = {model_name(role): role for role in ROLES}

MODEL_ENV = {f"{role.upper()}_MODEL": model_name(role) for role in ROLES}
"""The settings (environment variables) that point each of the service's roles at its stub model."""


def role_of(body: dict[str, Any]) -> str | None:
    """The role a request's model names, or None if it names none."""
    return MODEL_NAMES.get(str(body.get("model")))


def unknown_model(model: object) -> dict[str, Any]:
    names = ", ".join(MODEL_NAMES)
    return {
        "error": {
            "message": (
                f"the stub backend has no model {model!r}: the model names the calling agent, one of {names}"
            ),
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def billed_tokens(text: str, per_cl100k: float | None = None, chars_per_token: float | None = None) -> int:
    """Tokens the stub bills for ``text``: one per word, or ``per_cl100k`` per cl100k token, or one
    per ``chars_per_token`` characters (rounded up)."""
    if per_cl100k is not None:
        return max(1, math.ceil(estimate(text) * per_cl100k))
    if chars_per_token is not None:
        return max(1, math.ceil(len(text) / chars_per_token))
    return count_tokens(text)


@dataclass
class StubOptions:
    latency_s: float = 0.0
    tokens_per_s: float = 0.0
    subtasks: int = 3
    revise_first_round: bool = False
    planner_reply: str | None = None
    critic_reply: str | None = None
    worker_reply: str | None = None
    synthesizer_reply: str | None = None
    fill_max_tokens: bool = False
    obey_injection: bool = False
    """The synthesizer replies PWNED if that instruction appears outside <answer> data blocks, a
    worker if it appears outside its tool results."""
    reject_tools: bool = False
    """A worker call that offers tools gets HTTP 400, as from a backend without tool calling."""
    answer_tokens: int | None = None
    """Workers and the synthesizer answer with exactly this many tokens (words)."""
    plan: list[dict[str, Any]] | None = None
    """The planner's tasks (``id``, ``question``, ``depends_on``); else ``subtasks`` parts."""
    echo_subquestion: bool = False
    """Workers answer "Answer to: <their sub-question>", so prompts show whose answer they got."""
    slow: dict[str, float] = field(default_factory=dict)
    """Seconds of latency for a worker call whose sub-question contains the key."""
    role_tokens_per_s: dict[str, float] = field(default_factory=dict)
    """Generation speed per role, over ``tokens_per_s`` (e.g. a planner streaming at 40/s)."""
    bill_per_cl100k: float | None = None
    """A tokenizer that counts this many tokens per cl100k token (e.g. 1.6), for prompts and
    completions alike; the output cap is honoured in its tokens. Default: one token per word."""
    chars_per_token: float | None = None
    """A tokenizer that counts one token per this many characters (e.g. 2), likewise."""
    numbered: bool = False
    """Workers and the synthesizer end each reply with a number no other reply has, so a
    stored answer shows which call made it."""


class StubBackend:
    """Serve on 127.0.0.1 in a background thread: ``with StubBackend() as stub: stub.base_url``."""

    def __init__(self, options: StubOptions | None = None) -> None:
        self.options = options or StubOptions()
        self.calls: list[Recorded] = []
        self.received: list[tuple[str, str]] = []
        """(role, last message) of every chat request, the moment it arrives (answered or not)."""
        self.callers: list[tuple[str, str]] = []
        """(API key, role) of every chat request as it arrives: which replica made the call."""
        self.faults: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/_calls", self._calls, methods=["GET"]),
                Route("/_reset", self._reset, methods=["POST"]),
            ]
        )
        self.app = app

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inject(self, role: str, *faults: Fault) -> None:
        """Queue faults for the next calls of ``role`` ("any" matches every role)."""
        if role != "any" and role not in ROLES:
            raise ValueError(f"no such role: {role!r} (roles: {', '.join(ROLES)}, or 'any')")
        with self._lock:
            self.faults.setdefault(role, deque()).extend(faults)

    def calls_of(self, role: str) -> list[Recorded]:
        return [c for c in self.calls if c.role == role]

    def _next_fault(self, role: str, last: str) -> Fault | None:
        with self._lock:
            for key in (role, "any"):
                queue = self.faults.get(key) or deque()
                for fault in queue:
                    if fault.match is None or fault.match in last:
                        queue.remove(fault)
                        return fault
        return None

    async def _calls(self, request: Request) -> Response:
        """The recorded calls, for a harness in another process (times are CLOCK_MONOTONIC).

        ``last`` is the last message, its first 400 characters unless ``?full=1``; ``chunks``
        are a streamed call's ``[sent, text]`` pairs."""
        limit = None if request.query_params.get("full") == "1" else 400
        with self._lock:
            rows = [
                {
                    "role": c.role,
                    "started": c.started,
                    "finished": c.finished,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "status": c.status,
                    "last": str((c.body.get("messages") or [{}])[-1].get("content", ""))[:limit],
                    "chunks": [list(chunk) for chunk in c.chunks],
                }
                for c in self.calls
            ]
        return JSONResponse(rows)

    def reset(self) -> None:
        """Forget the recorded calls (queued faults stay)."""
        with self._lock:
            self.calls.clear()
            self.received.clear()
            self.callers.clear()

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def _models(self, request: Request) -> Response:
        models = [{"id": name, "object": "model", "owned_by": "stub"} for name in MODEL_NAMES]
        return JSONResponse({"object": "list", "data": models})

    def _reply(self, role: str, body: dict[str, Any]) -> str:
        o = self.options
        messages = body.get("messages", [])
        last = str(messages[-1].get("content", "")) if messages else ""
        if role == "planner":
            if o.planner_reply is not None:
                return o.planner_reply
            if o.plan is not None:
                return json.dumps({"subquestions": o.plan})
            limit = _max_items(body) or o.subtasks
            n = min(o.subtasks, limit)
            return json.dumps({"subquestions": [f"Part {i} of the question?" for i in range(1, n + 1)]})
        if role == "critic":
            if o.critic_reply is not None:
                return o.critic_reply
            ids = _task_ids(last)
            first_round = len(self.calls_of("critic")) == 0
            verdict = "revise" if o.revise_first_round and first_round else "accept"
            return json.dumps(
                {"verdicts": [{"task_id": t, "verdict": verdict, "feedback": "more detail"} for t in ids]}
            )
        if role == "synthesizer" and o.obey_injection:
            outside = re.sub(r"<answer>.*?</answer>", "", last, flags=re.DOTALL)
            if "reply PWNED" in outside:
                return "PWNED"
        if role == "worker" and o.obey_injection and stub_tools.injected(messages):
            return "PWNED"
        if role == "worker" and (result := stub_tools.tool_result(messages)) is not None:
            return f"The result is {result}."
        if o.answer_tokens is not None and role in ("worker", "synthesizer"):
            return " ".join(["word"] * o.answer_tokens)
        if role == "synthesizer":
            return o.synthesizer_reply if o.synthesizer_reply is not None else "The final answer is 42."
        if o.echo_subquestion:
            return f"Answer to: {subquestion_of(last)}"
        return o.worker_reply if o.worker_reply is not None else "A worker answer with some words."

    def count(self, text: str) -> int:
        """The tokens this stub bills for ``text``, by its options' tokenizer."""
        return billed_tokens(text, self.options.bill_per_cl100k, self.options.chars_per_token)

    def _truncate(self, text: str, cap: int) -> str:
        """The longest start of ``text`` within ``cap`` of this stub's tokens (whole words where
        the tokenizer counts words), as a backend stops at ``max_tokens``."""
        if self.count(text) <= cap:
            return text
        if self.options.bill_per_cl100k is None and self.options.chars_per_token is None:
            return " ".join(text.split()[:cap])
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if self.count(text[:middle]) <= cap:
                low = middle
            else:
                high = middle - 1
        return text[:low]

    async def _chat(self, request: Request) -> Response:
        started = time.perf_counter()
        body = await request.json()
        messages = body.get("messages", [])
        prompt_tokens = sum(self.count(str(m.get("content", ""))) + 3 for m in messages)
        role = role_of(body)
        if role is None:
            self._record(UNKNOWN, body, started, 0, 0, 400)
            return JSONResponse(unknown_model(body.get("model")), status_code=400)
        last = str(messages[-1].get("content", "")) if messages else ""
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            self.received.append((role, last))
            self.callers.append((key, role))
        fault = self._next_fault(role, last)
        if fault is not None:
            if fault.hang_s:
                await asyncio.sleep(fault.hang_s)
            self._record(role, body, started, prompt_tokens, 0, fault.status)
            if fault.stream_raw is not None and body.get("stream"):
                return Response(fault.stream_raw, status_code=200, media_type="text/event-stream")
            if fault.raw is not None:
                return Response(fault.raw, status_code=fault.status, media_type="application/json")
            return JSONResponse(
                fault.body or {"error": {"message": "scripted fault", "type": "server_error"}},
                status_code=fault.status,
                headers=fault.headers,
            )
        if role == "worker" and body.get("tools"):
            asked = await self._tool_call(body, started, prompt_tokens)
            if asked is not None:
                return asked
        text = self._reply(role, body)
        if self.options.numbered and role in ("worker", "synthesizer"):
            with self._lock:
                text += f" #{next(self._serial)}"
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        if self.options.fill_max_tokens and cap:
            text = " ".join(["word"] * int(cap))
        if cap:
            text = self._truncate(text, int(cap))
        completion_tokens = self.count(text)
        delay = self.options.latency_s
        if role == "worker" and self.options.slow:
            last_message = str(messages[-1].get("content", "")) if messages else ""
            subquestion = subquestion_of(last_message)
            delay = next((s for key, s in self.options.slow.items() if key in subquestion), delay)
        rate = self.options.role_tokens_per_s.get(role, self.options.tokens_per_s)
        if rate:
            delay += completion_tokens / rate
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        model = body.get("model", "stub")
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(role, body, started, text, usage, delay, model, cid, include_usage),
                media_type="text/event-stream",
            )
        if delay:
            await asyncio.sleep(delay)
        self._record(role, body, started, prompt_tokens, completion_tokens, 200, text)
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def _tool_call(self, body: dict[str, Any], started: float, prompt_tokens: int) -> Response | None:
        """A worker offered tools: refused (``reject_tools``), or a calculator call for a
        ``calculate:`` sub-question (after the stub's latency); None to answer as usual."""
        if self.options.reject_tools:
            self._record("worker", body, started, prompt_tokens, 0, 400)
            error = {"message": "tools are not supported", "type": "invalid_request_error", "param": "tools"}
            return JSONResponse({"error": error}, status_code=400)
        messages = body.get("messages", [])
        last = str(messages[-1].get("content", "")) if messages else ""
        if not messages or messages[-1].get("role") != "user" or not stub_tools.offers(body, "calculator"):
            return None
        expression = stub_tools.expression_for(subquestion_of(last), last)
        if expression is None:
            return None
        message = stub_tools.calculator_call(expression)
        completion = self.count(message["tool_calls"][0]["function"]["arguments"])
        if self.options.latency_s:
            await asyncio.sleep(self.options.latency_s)
        self._record("worker", body, started, prompt_tokens, completion, 200)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion}
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "stub"),
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {**usage, "total_tokens": prompt_tokens + completion},
            }
        )

    async def _stream(
        self,
        role: str,
        body: dict[str, Any],
        started: float,
        text: str,
        usage: dict[str, int],
        delay: float,
        model: str,
        cid: str,
        include_usage: bool,
    ) -> Any:
        words = text.split(" ")
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        record: Recorded | None = None
        for i, word in enumerate(words):
            if delay:
                await asyncio.sleep(delay / len(words))
            piece = word if i == 0 else " " + word
            chunk = {
                **base,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            if record is None:
                # Recorded before the client sees a byte, so a client that drops the stream
                # (or fails on its first delta) finds the call already counted.
                record = self._record(
                    role, body, started, usage["prompt_tokens"], usage["completion_tokens"], 200, text
                )
            data = f"data: {json.dumps(chunk)}\n\n"
            record.chunks.append((time.perf_counter(), piece))
            yield data
        end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(end)}\n\n"
        if include_usage:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
        if record is not None:
            record.finished = time.perf_counter()
        yield "data: [DONE]\n\n"

    def _record(
        self,
        role: str,
        body: dict[str, Any],
        started: float,
        prompt: int,
        completion: int,
        status: int,
        reply: str = "",
    ) -> Recorded:
        record = Recorded(role, body, started, time.perf_counter(), prompt, completion, status, reply=reply)
        with self._lock:
            self.calls.append(record)
        return record

    def start(self) -> StubBackend:
        self.port = free_port()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=75,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stub backend did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # do not wait for scripted hangs
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> StubBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def subquestion_of(prompt: str) -> str:
    """The sub-question a worker is asked (the last <subquestion> block: the ones before it are
    its dependencies')."""
    found = re.findall(r"<subquestion>\s*(.*?)\s*</subquestion>", prompt, flags=re.DOTALL)
    return found[-1] if found else ""


def _max_items(body: dict[str, Any]) -> int | None:
    fmt = body.get("response_format") or {}
    schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema") or {}
    items = schema.get("properties", {}).get("subquestions", {})
    value = items.get("maxItems")
    return int(value) if value else None


def _task_ids(text: str) -> list[str]:
    ids = []
    marker = 'task_id="'
    start = text.find(marker)
    while start != -1:
        end = text.find('"', start + len(marker))
        ids.append(text[start + len(marker) : end])
        start = text.find(marker, end)
    return ids


def _setting(text: str) -> tuple[str, float]:
    """``KEY=NUMBER`` from the command line (the key may hold "=": the number is after the last)."""
    key, sep, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not sep or not key or number < 0:
        raise argparse.ArgumentTypeError(f"expected KEY=NUMBER, got {text!r}")
    return key, number


def main() -> None:
    """Serve the stub in the foreground: ``python -m tests.stub_backend --port 9000 --latency 0.5``."""
    parser = argparse.ArgumentParser(description="A scripted OpenAI-compatible chat backend.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="generation speed (0 = instant)")
    parser.add_argument("--subtasks", type=int, default=3, help="sub-questions in every plan")
    parser.add_argument("--answer-tokens", type=int, default=None, help="tokens in each answer")
    parser.add_argument(
        "--plan-json",
        type=json.loads,
        default=None,
        help='the planner\'s tasks, as JSON: [{"id": "t1", "question": "...", "depends_on": []}, ...]',
    )
    parser.add_argument(
        "--echo-subquestion", action="store_true", help='workers answer "Answer to: <sub-question>"'
    )
    parser.add_argument(
        "--slow",
        type=_setting,
        action="append",
        default=[],
        metavar="SUBSTRING=SECONDS",
        help="latency of a worker call whose sub-question contains SUBSTRING (repeatable)",
    )
    parser.add_argument(
        "--role-tokens-per-s",
        type=_setting,
        action="append",
        default=[],
        metavar="ROLE=RATE",
        help="generation speed of one role, e.g. planner=40 (repeatable)",
    )
    args = parser.parse_args()
    if args.plan_json is not None and not isinstance(args.plan_json, list):
        parser.error("--plan-json must be a JSON list of tasks")
    for role, _ in args.role_tokens_per_s:
        if role not in ROLES:
            parser.error(f"--role-tokens-per-s: no such role {role!r} (roles: {', '.join(ROLES)})")
    stub = StubBackend(
        StubOptions(
            latency_s=args.latency,
            tokens_per_s=args.tokens_per_s,
            subtasks=args.subtasks,
            answer_tokens=args.answer_tokens,
            plan=args.plan_json,
            echo_subquestion=args.echo_subquestion,
            slow=dict(args.slow),
            role_tokens_per_s=dict(args.role_tokens_per_s),
        )
    )
    url = f"http://{args.host}:{args.port}/v1"
    env = " ".join(f"{name}={model}" for name, model in MODEL_ENV.items())
    print(  # noqa: T201
        f"stub backend on {url}; the model names the role: {', '.join(MODEL_NAMES)} (others get 400)\n"
        f"point the service at it with: LLM_BASE_URL={url} {env}",
        flush=True,
    )
    uvicorn.run(stub.app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=75)


if __name__ == "__main__":
    main()
