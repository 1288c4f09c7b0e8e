"""The OpenAI-compatible endpoint, called by real clients: the openai SDK and ChatOpenAI."""

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from pydantic import SecretStr

from graph.tokens import estimate
from tests.conftest import Service
from tests.stub_backend import Fault, StubBackend


@pytest.fixture
def sdk(service: Service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_one_model(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["reasoner"]
    assert sdk.models.retrieve("reasoner").id == "reasoner"


def test_non_streamed_completion_with_reasoning_usage(sdk: openai.OpenAI, stub: StubBackend) -> None:
    completion = sdk.chat.completions.create(
        model="reasoner", messages=[{"role": "user", "content": "Why is the sky blue?"}]
    )
    assert completion.choices[0].message.content == "The final answer is 42."
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens is not None
    assert usage.completion_tokens_details.reasoning_tokens > 0
    assert usage.total_tokens == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert usage.prompt_tokens == estimate("Why is the sky blue?"), "the question alone"
    answer = usage.completion_tokens - usage.completion_tokens_details.reasoning_tokens
    assert answer == stub.calls_of("synthesizer")[0].completion_tokens


def test_streamed_completion_with_usage(sdk: openai.OpenAI, stub: StubBackend) -> None:
    stream = sdk.chat.completions.create(
        model="reasoner",
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The final answer is 42."
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens
    assert usage.total_tokens == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    answer = usage.completion_tokens - usage.completion_tokens_details.reasoning_tokens
    assert answer == stub.calls_of("synthesizer")[0].completion_tokens


def test_streamed_without_usage_sends_none(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="reasoner", messages=[{"role": "user", "content": "Q?"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The final answer is 42."
    assert all(c.usage is None for c in chunks)


def test_reasoning_effort_is_honoured(sdk: openai.OpenAI, stub: StubBackend) -> None:
    stub.options.subtasks = 8
    sdk.chat.completions.create(
        model="reasoner", messages=[{"role": "user", "content": "Q?"}], reasoning_effort="low"
    )
    assert len(stub.calls_of("worker")) == 2
    assert stub.calls_of("critic") == []


def test_earlier_messages_are_context(sdk: openai.OpenAI, stub: StubBackend) -> None:
    sdk.chat.completions.create(
        model="reasoner",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "My cat is called Tom."},
            {"role": "assistant", "content": "Nice name."},
            {"role": "user", "content": "What is my cat called?"},
        ],
    )
    planner_prompt = stub.calls_of("planner")[0].body["messages"][-1]["content"]
    assert "user: My cat is called Tom." in planner_prompt
    assert planner_prompt.rstrip().endswith("Question: What is my cat called?\n</question>".rstrip())


def test_langchain_chat_openai_as_a_client(service: Service, stub: StubBackend) -> None:
    chat = ChatOpenAI(
        model="reasoner", base_url=f"{service.url}/v1", api_key=SecretStr("unused"), max_retries=0
    )
    message = chat.invoke("Why is the sky blue?")
    assert message.text == "The final answer is 42."
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_token_details"].get("reasoning", 0) > 0
    # ChatOpenAI keeps OpenAI's own fields only: the reasoning's size, not its text (docs/api.md).
    assert "reasoning_content" not in message.additional_kwargs
    first_run = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert message.usage_metadata["total_tokens"] == first_run
    streamed = chat.model_copy(update={"stream_usage": True})
    pieces = list(streamed.stream("Why is the sky blue?"))
    assert "".join(p.text for p in pieces) == "The final answer is 42."
    assert not any("reasoning_content" in p.additional_kwargs for p in pieces)
    total = sum((p for p in pieces[1:]), pieces[0])
    assert total.usage_metadata is not None
    both_runs = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert total.usage_metadata["total_tokens"] == both_runs - first_run > 0


def test_errors_in_openai_shape(sdk: openai.OpenAI, client: httpx.Client, stub: StubBackend) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "Q?"}])
    assert missing.value.code == "model_not_found"
    response = client.post("/v1/chat/completions", json={"model": "reasoner", "messages": []})
    assert response.status_code == 422
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    no_user = client.post(
        "/v1/chat/completions", json={"model": "reasoner", "messages": [{"role": "system", "content": "x"}]}
    )
    assert no_user.status_code == 400
    assert stub.calls == []


def test_backend_failure_reaches_the_client(sdk: openai.OpenAI, stub: StubBackend) -> None:
    stub.inject("planner", Fault(status=401))
    with pytest.raises(openai.APIStatusError) as failed:
        sdk.chat.completions.create(model="reasoner", messages=[{"role": "user", "content": "Q?"}])
    assert failed.value.status_code == 502
    assert failed.value.code == "upstream_auth"


def test_nullable_fields_are_sent_as_null(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions", json={"model": "reasoner", "messages": [{"role": "user", "content": "Q?"}]}
    )
    choice = response.json()["choices"][0]
    assert "logprobs" in choice and choice["logprobs"] is None
    assert "refusal" in choice["message"] and choice["message"]["refusal"] is None
    assert response.headers["x-run-id"].startswith("run_")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_parameters_it_cannot_honour_are_refused(
    client: httpx.Client, stub: StubBackend, extra: dict[str, object], param: str
) -> None:
    body = {"model": "reasoner", "messages": [{"role": "user", "content": "Q?"}], **extra}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", param)
    assert param in error["message"]
    assert stub.calls == []


def test_harmless_defaults_of_those_parameters_are_accepted(client: httpx.Client) -> None:
    body = {
        "model": "reasoner",
        "messages": [{"role": "user", "content": "Q?"}],
        "n": 1,
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "logprobs": False,
    }
    assert client.post("/v1/chat/completions", json=body).status_code == 200


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
        [{"role": "user", "content": "  "}],
        [{"role": "system", "content": "Be brief."}],
    ],
)
def test_every_400_carries_a_code(client: httpx.Client, messages: list[dict[str, str]]) -> None:
    response = client.post("/v1/chat/completions", json={"model": "reasoner", "messages": messages})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_messages", "messages")


def reasoning_of(chunks: list[ChatCompletionChunk]) -> list[str | None]:
    """Per chunk with a choice: its ``delta.reasoning_content`` (an extra field for the SDK)."""
    return [(c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices]


def test_the_stream_thinks_aloud_before_it_answers(sdk: openai.OpenAI, stub: StubBackend) -> None:
    stub.options.revise_first_round = True
    chunks = list(
        sdk.chat.completions.create(
            model="reasoner", messages=[{"role": "user", "content": "Why is the sky blue?"}], stream=True
        )
    )
    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    thoughts = reasoning_of(chunks)
    first_thought = next(i for i, t in enumerate(thoughts) if t)
    first_answer = next(i for i, c in enumerate(contents) if c)
    assert first_thought < first_answer
    assert not any(thoughts[first_answer:]), "the answer comes after the thinking"
    text = "".join(t or "" for t in thoughts)
    assert text.startswith("Plan:\n- t1: Part 1 of the question?\n")
    assert "Review, round 1:\n- t1: revise (more detail)" in text
    assert "t1 (attempt 2): A worker answer with some words." in text


def test_a_plain_reply_carries_the_streamed_reasoning(sdk: openai.OpenAI, stub: StubBackend) -> None:
    # Two runs of one script: workers finish in task order, after the whole plan, in both (0.1 s
    # was once too short for the plan to finish streaming on a loaded machine).
    stub.options.slow = {"Part 1": 0.5, "Part 2": 0.6, "Part 3": 0.7}
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Why is the sky blue?"}]
    chunks = list(sdk.chat.completions.create(model="reasoner", messages=messages, stream=True))
    streamed = "".join(t or "" for t in reasoning_of(chunks))
    message = sdk.chat.completions.create(model="reasoner", messages=messages).choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == streamed
    assert streamed.startswith("Plan:\n- t1: Part 1 of the question?\n")
    assert "t3 (attempt 1): A worker answer with some words." in streamed


def test_streamed_and_plain_replies_agree(sdk: openai.OpenAI, stub: StubBackend) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Why is the sky blue?"}]
    plain = sdk.chat.completions.create(model="reasoner", messages=messages)
    chunks = list(
        sdk.chat.completions.create(
            model="reasoner", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content
    assert chunks[-1].usage == plain.usage
    assert plain.usage is not None
    assert 2 * plain.usage.total_tokens == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
