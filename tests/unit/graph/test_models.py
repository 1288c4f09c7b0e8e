"""The chat model reads a plain reply on the event loop (no thread hop per call) and sends what
the SDK would send, without its per-call parameter transform."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from graph.models import ChatOnLoop, openai_chat_model
from tests.stub_backend import StubBackend, model_name


class NoThreads(ThreadPoolExecutor):
    """A default executor that fails whatever is handed to it."""

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a call hopped to a thread")


def ask(chat: ChatOpenAI) -> AIMessage:
    async def scenario() -> AIMessage:
        await chat.ainvoke([HumanMessage("Hi")])  # the SDK looks up the platform once, in a thread
        asyncio.get_running_loop().set_default_executor(NoThreads())
        reply = await chat.ainvoke([HumanMessage("Why is the sky blue?")])
        assert isinstance(reply, AIMessage)
        return reply

    return asyncio.run(scenario())


def test_a_plain_reply_is_read_on_the_loop_with_its_usage_and_metadata(stub: StubBackend) -> None:
    chat = openai_chat_model(
        model=model_name("synthesizer"), base_url=stub.base_url, api_key="sk-test", timeout_s=10
    )
    reply = ask(chat)
    assert reply.content
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    assert reply.response_metadata["model_name"] == model_name("synthesizer")
    library = ChatOpenAI(model=model_name("synthesizer"), base_url=stub.base_url, api_key="sk-test")
    with pytest.raises(AssertionError, match="hopped to a thread"):
        ask(library)  # the library's own path hops: what this test would catch


Request = tuple[str, dict[str, str], Any]
UNCOMPARED = {"content-length", "x-stainless-raw-response"}


def sent(chat_class: type[ChatOpenAI], stub: StubBackend, stream: bool) -> list[Request]:
    """The requests a chat model of ``chat_class`` sends for one call: URL, headers and body
    (without the header by which the SDK marks a raw response for itself)."""
    requests: list[Request] = []

    async def record(request: Any) -> None:
        headers = {k: v for k, v in request.headers.items() if k not in UNCOMPARED}
        requests.append((str(request.url), headers, json.loads(request.content)))

    async def scenario() -> None:
        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [record]})
        chat = chat_class(
            model=model_name("synthesizer"), base_url=stub.base_url, api_key=SecretStr("sk-test"),
            max_retries=0, stream_usage=True, http_async_client=http, streaming=stream,
        )  # fmt: skip
        messages = [SystemMessage("Be brief."), HumanMessage("Why is the sky blue?")]
        reply = await chat.ainvoke(messages, max_tokens=40, stop=["\n\n"], extra_body={"top_k": 5})
        assert reply.content and reply.usage_metadata is not None
        await http.aclose()

    asyncio.run(scenario())
    return requests


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_call_sends_what_the_sdk_would_send(stub: StubBackend, stream: bool) -> None:
    ours = sent(ChatOnLoop, stub, stream)
    library = sent(ChatOpenAI, stub, stream)
    assert len(ours) == 1 and ours == library
    _, headers, body = ours[0]
    assert headers["authorization"] == "Bearer sk-test"
    assert body["max_completion_tokens"] == 40 and body["top_k"] == 5 and body.get("stream", False) is stream
