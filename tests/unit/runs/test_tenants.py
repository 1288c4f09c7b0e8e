"""Tenants: the keys file, who a key is, and which runs a caller may see."""

import hashlib
from pathlib import Path

import pytest

from api.runs.tenants import Caller, Limits, Tenant, check_cost_quotas, hash_key, load_tenants
from api.settings import ConfigurationError

ALICE = "sk-alice-0123456789"
OPS = "sk-ops-9876543210"


def write(tmp_path: Path, text: str, suffix: str = ".yaml") -> Path:
    path = tmp_path / f"keys{suffix}"
    path.write_text(text)
    return path


def test_a_keys_file_names_keys_gives_them_by_hash_and_sets_limits(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
keys:
  - {{name: alice, key: "{ALICE}", requests_per_minute: 60, tokens_per_day: 2000000, cost_usd_per_day: 5}}
  - {{name: ops, sha256: "{hashlib.sha256(OPS.encode()).hexdigest().upper()}", admin: true}}
""",
    )
    tenants = load_tenants(["sk-plain-key"], path)
    alice, ops, plain = tenants.identify(ALICE), tenants.identify(OPS), tenants.identify("sk-plain-key")
    assert alice == Tenant("alice", hash_key(ALICE), False, Limits(60, 2_000_000, 5.0))
    assert ops is not None and ops.admin and ops.key_hash == hash_key(OPS) and not ops.limits.any
    assert plain is not None and plain.name == "key-1" and not plain.admin
    assert tenants.identify("sk-unknown") is None
    assert tenants.named("alice") == alice and tenants.name_of(hash_key(OPS)) == "ops"


def test_a_json_keys_file_works_too(tmp_path: Path) -> None:
    path = write(tmp_path, f'{{"keys": [{{"name": "bob", "key": "{ALICE}"}}]}}', ".json")
    tenant = load_tenants([], path).identify(ALICE)
    assert tenant is not None and tenant.name == "bob"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys:\n  - {name: alice}\n", "keys[0] (alice): Value error, give exactly one of key and sha256"),
        (
            f'keys:\n  - {{name: a, key: "{ALICE}"}}\n  - {{name: b, key: "{OPS}", tokens_per_day: -1}}\n',
            "keys[1] (b).tokens_per_day: Input should be greater than or equal to 1",
        ),
        ('keys:\n  - {name: a, sha256: "abc"}\n', "keys[0] (a).sha256: String should match pattern"),
        (
            f'keys:\n  - {{name: a, key: "{ALICE}", rpm: 5}}\n',
            "keys[0] (a).rpm: Extra inputs are not permitted",
        ),
        (
            f'keys:\n  - {{name: a, key: "{ALICE}"}}\n  - {{name: a, key: "{OPS}"}}\n',
            "the name 'a' is given twice",
        ),
        (
            f'keys:\n  - {{name: a, key: "{ALICE}"}}\n  - {{name: b, key: "{ALICE}"}}\n',
            "'b' has the same key as 'a'",
        ),
        ("keys: [\n", "is not valid JSON or YAML"),
        ("keys: []\n", "keys: List should have at least 1 item"),
    ],
)
def test_a_malformed_keys_file_stops_start_up_naming_the_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_tenants([], write(tmp_path, text))
    assert message in str(raised.value)
    assert ALICE not in str(raised.value), "a key is never echoed"


def test_a_missing_keys_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read API_KEYS_FILE"):
        load_tenants([], tmp_path / "nope.yaml")


def test_a_caller_sees_its_own_runs_and_an_admin_every_run() -> None:
    alice, ops = Tenant("alice", "a" * 64), Tenant("ops", "b" * 64, admin=True)
    assert Caller(alice).may_see("a" * 64)
    assert not Caller(alice).may_see("c" * 64) and not Caller(alice).may_see(None)
    assert Caller(ops).may_see("a" * 64) and Caller(ops).may_see(None)
    assert Caller().may_see("a" * 64), "without keys, nobody is told apart"


def test_a_cost_quota_needs_a_price_for_every_model(tmp_path: Path) -> None:
    tenants = load_tenants(
        [], write(tmp_path, f'keys:\n  - {{name: a, key: "{ALICE}", cost_usd_per_day: 1}}\n')
    )
    check_cost_quotas(tenants, {"m1", "m2"}, {"m1", "m2"})
    with pytest.raises(
        ConfigurationError, match="'a' has a cost_usd_per_day, and the model 'm2' has no price"
    ):
        check_cost_quotas(tenants, {"m1"}, {"m1", "m2"})
