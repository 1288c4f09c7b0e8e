"""Model prices: ``PRICES_FILE`` (JSON or YAML) maps a model name to US dollars per million
input, cached-input and output tokens. Nothing is built in for remote models (their prices
change); the embedded model costs nothing.

```yaml
gpt-4.1-mini: {input: 0.40, cached_input: 0.10, output: 1.60}
```
"""

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from api.backend import Backend, ConfigurationError
from graph import Price, Prices


class _Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)


class _PriceFile(RootModel[dict[str, _Price]]):
    pass


def load_prices(path: Path | None) -> dict[str, Price]:
    """The price file's table (empty without one); ConfigurationError naming what is wrong."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        table = _PriceFile.model_validate(raw if raw is not None else {}).root
    except OSError as exc:
        raise ConfigurationError(f"cannot read PRICES_FILE {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"PRICES_FILE {path} is not valid JSON or YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"PRICES_FILE {path}: {where}: {first['msg']}") from exc
    return {name: Price(p.input, p.output, p.cached_input) for name, p in table.items()}


def prices_for(path: Path | None, backend: Backend) -> Prices:
    """The table the runs are priced with: the file's, and the embedded model at zero."""
    table = load_prices(path)
    if backend.embedded:
        for name in backend.models.names:
            table.setdefault(name, Price(0.0, 0.0, 0.0))
    return table
