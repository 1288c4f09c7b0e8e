"""Tenants: who may call the service, what each may see, and what each may spend.

Every API key is a tenant. ``API_KEYS`` gives them in the simple form (one tenant per key, no
limits); ``API_KEYS_FILE`` (YAML or JSON) names them, gives a key as its SHA-256 where the file
should hold no secret, marks admins and sets limits:

```yaml
keys:
  - {name: alice, key: "sk-…", requests_per_minute: 60, tokens_per_day: 2000000, cost_usd_per_day: 5}
  - {name: ops, sha256: "<hex of the key>", admin: true}
```

A run belongs to the key that made it (its hash is stored with the run, never the key). A key
sees and cancels its own runs; an admin key every run.
"""

import hashlib
import hmac
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.config_files import dotted, read_config
from api.settings import ConfigurationError


def hash_key(key: str) -> str:
    """What is stored of an API key: the hex SHA-256 of it."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Limits:
    """A tenant's quotas; None is no limit."""

    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    cost_usd_per_day: float | None = None

    @property
    def any(self) -> bool:
        limits = (self.requests_per_minute, self.tokens_per_day, self.cost_usd_per_day)
        return any(limit is not None for limit in limits)


@dataclass(frozen=True)
class Tenant:
    name: str
    key_hash: str
    admin: bool = False
    limits: Limits = Limits()


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.@-]+$")
    key: str | None = Field(None, min_length=8)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    admin: bool = False
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)
    cost_usd_per_day: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_key(self) -> "_Entry":
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of key and sha256")
        return self

    def tenant(self) -> Tenant:
        digest = self.sha256.lower() if self.sha256 is not None else hash_key(self.key or "")
        limits = Limits(self.requests_per_minute, self.tokens_per_day, self.cost_usd_per_day)
        return Tenant(self.name, digest, self.admin, limits)


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[_Entry] = Field(min_length=1)


class Tenants:
    """The tenants of this deployment; empty when neither API_KEYS nor API_KEYS_FILE is set
    (then nobody needs a key, and every caller sees every run)."""

    def __init__(self, tenants: list[Tenant]) -> None:
        self._by_hash: dict[str, Tenant] = {}
        self._by_name: dict[str, Tenant] = {}
        for tenant in tenants:
            if tenant.key_hash in self._by_hash:
                twin = self._by_hash[tenant.key_hash].name
                raise ConfigurationError(f"API keys: {tenant.name!r} has the same key as {twin!r}")
            if tenant.name in self._by_name:
                raise ConfigurationError(f"API keys: the name {tenant.name!r} is given twice")
            self._by_hash[tenant.key_hash] = tenant
            self._by_name[tenant.name] = tenant

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._by_hash.values())

    def identify(self, key: str) -> Tenant | None:
        """The tenant of this key, compared in constant time against every known hash."""
        digest = hash_key(key).encode()
        found: Tenant | None = None
        for known, tenant in self._by_hash.items():
            if hmac.compare_digest(digest, known.encode()):
                found = tenant
        return found

    def named(self, name: str) -> Tenant | None:
        return self._by_name.get(name)

    def name_of(self, key_hash: str | None) -> str | None:
        tenant = self._by_hash.get(key_hash or "")
        return tenant.name if tenant is not None else None


def load_tenants(keys: list[str], path: Path | None) -> Tenants:
    """The tenants of ``API_KEYS`` (named key-1, key-2, …) and of ``API_KEYS_FILE``;
    ConfigurationError naming the entry that is wrong."""
    tenants = [Tenant(f"key-{i}", hash_key(key)) for i, key in enumerate(keys, start=1)]
    if path is not None:
        tenants += [entry.tenant() for entry in read_config("API_KEYS_FILE", path, _KeysFile, _entry).keys]
    return Tenants(tenants)


def _entry(raw: Any, loc: tuple[int | str, ...]) -> str:
    """``keys[1] (bob).tokens_per_day``: the entry by its index and, where it has one, its name."""
    if len(loc) < 2 or loc[0] != "keys" or not isinstance(loc[1], int):
        return dotted(raw, loc)
    entry = raw["keys"][loc[1]] if isinstance(raw, dict) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"keys[{loc[1]}]" + (f" ({name})" if name else "") + "".join(f".{p}" for p in loc[2:])


def check_cost_quotas(tenants: Tenants, priced: Collection[str], models: Collection[str]) -> None:
    """A cost_usd_per_day holds only where every model has a price: ConfigurationError if not."""
    unpriced = sorted(set(models) - set(priced))
    limited = [t.name for t in tenants if t.limits.cost_usd_per_day is not None]
    if unpriced and limited:
        raise ConfigurationError(
            f"API_KEYS_FILE: {limited[0]!r} has a cost_usd_per_day, and the model {unpriced[0]!r} "
            "has no price (PRICES_FILE)"
        )


@dataclass(frozen=True)
class Caller:
    """Who is asking: a tenant, or nobody when the service needs no key."""

    tenant: Tenant | None = None

    @property
    def key_hash(self) -> str | None:
        return self.tenant.key_hash if self.tenant is not None else None

    @property
    def sees_all(self) -> bool:
        return self.tenant is None or self.tenant.admin

    def may_see(self, owner: str | None) -> bool:
        """Whether a run accounted to ``owner`` (a key's hash) is this caller's to see."""
        return self.sees_all or (self.tenant is not None and owner == self.tenant.key_hash)
