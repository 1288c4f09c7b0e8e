"""What a backend bills for a prompt: cl100k counts, scaled by what each model has reported.

The local count is cl100k_base's; a backend's own tokenizer may count more (SmolLM2 counts
1.0-1.1x on English, 1.4-1.7x on Chinese, Russian and Japanese), and non-Latin scripts are where
counts differ most. So a prompt is reserved at ``ratio * (Latin tokens + NON_LATIN_WEIGHT * other
tokens)``, plus the chat template's tokens:

- before a model has reported usage, ``ratio`` is the highest any model of the process has shown,
  and never below PRIOR_RATIO (1.25x cl100k on Latin text, 2.1x on other scripts);
- after each report it is the highest billed/cl100k ratio the model has shown (decaying slowly
  towards lower ones, never below FLOOR_RATIO), plus a MARGIN of 5%.

Reports of prompts and of completions both count: they come from the same tokenizer.
"""

import functools
import json
import math
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage

from graph.tokens import MESSAGE_OVERHEAD, encoding

NON_LATIN_WEIGHT = 1.7
"""How much more a token of another script may cost than a Latin one, against cl100k's count
(SmolLM2 counts 1.0-1.1x cl100k on English, 1.4x on Chinese, 1.6x on Russian, 1.7x on Japanese)."""

PRIOR_RATIO = 1.25
"""Before any report: 1.25x cl100k on Latin text, 2.1x on other scripts."""

FLOOR_RATIO = 1.0
"""A backend is never assumed to count fewer tokens than cl100k."""

MARGIN = 1.05
"""Over a learned ratio: texts of one script vary too (SmolLM2: 1.01x cl100k on the worker's
prompt, 1.06x on the planner's)."""

DECAY = 0.05
"""How far each lower report brings the ratio down, as a share of the difference."""

MIN_OBSERVED = 32
"""Texts shorter than this (cl100k tokens) teach nothing: an end-of-text token weighs too much."""

PROMPT_OVERHEAD = 16
"""Chat-template tokens a backend may add beyond the per-message estimate."""


@dataclass(frozen=True)
class TextSize:
    """A text's cl100k tokens, split into those of ASCII text and the rest, and the chat
    template's tokens around its messages (counted as they are, never scaled)."""

    latin: int = 0
    other: int = 0
    framing: int = 0

    @property
    def tokens(self) -> int:
        return self.latin + self.other

    @property
    def counted(self) -> int:
        """The local count, unscaled, template included."""
        return self.tokens + self.framing

    def __add__(self, more: "TextSize") -> "TextSize":
        return TextSize(self.latin + more.latin, self.other + more.other, self.framing + more.framing)


def measure(text: str) -> TextSize:
    """Tokens with a byte outside ASCII are the other scripts' (Latin letters with accents too)."""
    enc = encoding()
    tokens = enc.encode(text, disallowed_special=())
    if text.isascii():  # every token's bytes are ASCII: no need to look at them
        return TextSize(latin=len(tokens))
    non_latin = sum(1 for piece in enc.decode_tokens_bytes(tokens) if not piece.isascii())
    return TextSize(latin=len(tokens) - non_latin, other=non_latin)


@functools.lru_cache(maxsize=64)
def measure_repeated(text: str) -> TextSize:
    """``measure``, remembered for the texts that come back call after call: system prompts and
    tool schemas."""
    return measure(text)


def measure_messages(messages: list[BaseMessage]) -> TextSize:
    size = TextSize(framing=MESSAGE_OVERHEAD * len(messages))
    for message in messages:
        text = str(message.content)
        size += measure_repeated(text) if isinstance(message, SystemMessage) else measure(text)
        if isinstance(message, AIMessage) and message.tool_calls:
            size += measure(json.dumps([[c["name"], c["args"]] for c in message.tool_calls]))
    return size


@dataclass(frozen=True)
class Rates:
    """Tokens a backend is expected to bill per cl100k token of Latin text and of other scripts."""

    latin: float
    other: float

    @classmethod
    def of(cls, ratio: float) -> "Rates":
        return cls(ratio, ratio * NON_LATIN_WEIGHT)

    def tokens(self, size: TextSize) -> int:
        """The text's billed tokens, template excluded."""
        return math.ceil(self.latin * size.latin + self.other * size.other)

    def prompt(self, size: TextSize) -> int:
        """The most a prompt of this size is expected to bill, template included."""
        return self.tokens(size) + size.framing + PROMPT_OVERHEAD

    def __or__(self, more: "Rates") -> "Rates":
        """The higher of both, script by script."""
        return Rates(max(self.latin, more.latin), max(self.other, more.other))


PRIOR_RATES = Rates.of(PRIOR_RATIO)
"""What a model that has not reported yet is reserved with, when no other model has either."""


class Calibration:
    """The billed/cl100k ratio of each model of a process, learned from its usage reports and
    shared by every run (and every role) that calls it. One event loop: no locks."""

    def __init__(self) -> None:
        self._ratios: dict[str, float] = {}

    def ratio(self, model: str) -> float:
        """What the model's prompts are reserved with, per cl100k token of Latin text."""
        own = self._ratios.get(model)
        if own is None:
            return max([PRIOR_RATIO, *(self._reserved(seen) for seen in self._ratios.values())])
        return self._reserved(own)

    @staticmethod
    def _reserved(seen: float) -> float:
        return MARGIN * max(FLOOR_RATIO, seen)

    def rates(self, model: str) -> Rates:
        return Rates.of(self.ratio(model))

    def observe(self, model: str, size: TextSize, billed: int) -> None:
        """Learn from a text of ``size`` that the backend billed ``billed`` tokens for (template
        included: a prompt's ratio errs high, never low)."""
        if size.tokens < MIN_OBSERVED or billed <= 0:
            return
        seen = billed / size.tokens
        own = self._ratios.get(model)
        self._ratios[model] = seen if own is None or seen >= own else own - DECAY * (own - seen)
