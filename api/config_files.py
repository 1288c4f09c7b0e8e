"""The operator's files (``PRICES_FILE``, ``API_KEYS_FILE``): JSON or YAML, read and validated at
start; whatever is wrong is one ConfigurationError naming the setting, the file and the place."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from api.settings import ConfigurationError

M = TypeVar("M", bound=BaseModel)

Place = Callable[[Any, tuple[int | str, ...]], str]
"""How to name the place of a fault, given the file's content and pydantic's location."""


def dotted(raw: Any, loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def read_config(setting: str, path: Path, model: type[M], place: Place = dotted) -> M:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {setting} {path}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{setting} {path} is not valid JSON or YAML: {exc}") from exc
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = place(raw, tuple(first["loc"])) or "the file"
        raise ConfigurationError(f"{setting} {path}: {where}: {first['msg']}") from exc
