"""The floor for orchestration cost: the same call pattern as the engine (planner → all workers
at once → critic → synthesizer, same prompts), written as plain asyncio with the openai SDK.

``python -m tests.bench.reference --backend URL --port P`` serves it over HTTP (uvicorn, like
the service) so both can be driven the same way, through an HTTP client that keeps as many idle
connections as the service's (``LLM_KEEPALIVE_CONNECTIONS``'s default), so that the connection
pool costs both sides alike.
"""

import argparse
import asyncio
import json
from typing import Any

import uvicorn
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.backend.connect import model_http_client
from api.settings import Settings
from graph.prompts import (
    CRITIC_SYSTEM,
    CRITIC_USER,
    PLANNER_SYSTEM,
    PLANNER_USER,
    SUBANSWER_BLOCK,
    SYNTHESIZER_SYSTEM,
    SYNTHESIZER_USER,
    WORKER_SYSTEM,
    WORKER_USER,
)
from graph.schemas import critique_schema, plan_schema
from tests.stub_backend import model_name

MAX_TOKENS = 512
KEEPALIVE = Settings.model_fields["llm_keepalive_connections"].default


async def _ask(client: AsyncOpenAI, role: str, system: str, user: str, **extra: Any) -> tuple[str, int]:
    response = await client.chat.completions.create(
        model=model_name(role),
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        max_tokens=MAX_TOKENS,
        **extra,
    )
    usage = response.usage
    return response.choices[0].message.content or "", usage.total_tokens if usage else 0


async def reference_run(client: AsyncOpenAI, question: str, subtasks: int) -> dict[str, Any]:
    plan_format = {"type": "json_schema", "json_schema": {"name": "plan", "schema": plan_schema(subtasks)}}
    text, total = await _ask(
        client,
        "planner",
        PLANNER_SYSTEM.format(max_subtasks=subtasks),
        PLANNER_USER.format(question=question),
        response_format=plan_format,
    )
    try:
        subquestions = [str(q) for q in json.loads(text)["subquestions"]][:subtasks] or [question]
    except (ValueError, KeyError, TypeError):
        subquestions = [question]
    answers = await asyncio.gather(
        *[
            _ask(
                client,
                "worker",
                WORKER_SYSTEM,
                WORKER_USER.format(question=question, dependencies="", subquestion=q),
            )
            for q in subquestions
        ]
    )
    total += sum(tokens for _, tokens in answers)
    blocks = "\n".join(
        SUBANSWER_BLOCK.format(task_id=f"t{i}", depends_on="", subquestion=q, answer=a)
        for i, (q, (a, _)) in enumerate(zip(subquestions, answers, strict=True), start=1)
    )
    ids = [f"t{i}" for i in range(1, len(subquestions) + 1)]
    critic_format = {"type": "json_schema", "json_schema": {"name": "critic", "schema": critique_schema(ids)}}
    _, tokens = await _ask(
        client,
        "critic",
        CRITIC_SYSTEM,
        CRITIC_USER.format(question=question, subanswers=blocks),
        response_format=critic_format,
    )
    total += tokens
    answer, tokens = await _ask(
        client,
        "synthesizer",
        SYNTHESIZER_SYSTEM,
        SYNTHESIZER_USER.format(question=question, subanswers=blocks, missing=""),
    )
    return {"answer": answer, "total_tokens": total + tokens}


def app(backend: str) -> Starlette:
    client = AsyncOpenAI(
        base_url=backend, api_key="unused", max_retries=0, http_client=model_http_client(KEEPALIVE)
    )

    async def reason(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(await reference_run(client, body["question"], int(body.get("max_subtasks", 4))))

    return Starlette(routes=[Route("/reason", reason, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app(args.backend), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
