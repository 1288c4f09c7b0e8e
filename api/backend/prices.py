"""Model prices: ``PRICES_FILE`` (JSON or YAML) maps a model name to US dollars per million
input, cached-input and output tokens. Nothing is built in for remote models (their prices
change); the embedded model costs nothing.

```yaml
gpt-4.1-mini: {input: 0.40, cached_input: 0.10, output: 1.60}
```
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, RootModel

from api.backend.connect import Backend
from api.config_files import read_config
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
    table = read_config("PRICES_FILE", path, _PriceFile).root
    return {name: Price(p.input, p.output, p.cached_input) for name, p in table.items()}


def prices_for(path: Path | None, backend: Backend) -> Prices:
    """The table the runs are priced with: the file's, and the embedded model at zero."""
    table = load_prices(path)
    if backend.embedded:
        for name in backend.models.names:
            table.setdefault(name, Price(0.0, 0.0, 0.0))
    return table
