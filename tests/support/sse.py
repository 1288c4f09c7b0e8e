"""A small server-sent-events reader for tests: frames as they arrive, with arrival times."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Frame:
    id: int | None
    event: str | None
    data: Any
    comment: bool
    at: float


def frames(response: httpx.Response) -> Iterator[Frame]:
    event: str | None = None
    ident: int | None = None
    data: list[str] = []
    comment = False
    for line in response.iter_lines():
        if line == "":
            if data or comment:
                text = "\n".join(data)
                payload = text if text == "[DONE]" or not text else json.loads(text)
                yield Frame(ident, event, payload, comment and not data, time.perf_counter())
            event, ident, data, comment = None, None, [], False
            continue
        if line.startswith(":"):
            comment = True
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "id":
            ident = int(value)
        elif field == "data":
            data.append(value)
