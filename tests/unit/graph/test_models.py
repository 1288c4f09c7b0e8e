"""The chat model reads a plain reply on the event loop: no thread hop per call."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai import ChatOpenAI

from graph.models import openai_chat_model
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
