"""Imports point one way: graph/ never imports api/, and never reads the environment; within
api/, each wing imports only the wings below it; the run service and storage (api/runs,
api/storage) know no HTTP."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAPH = ROOT / "graph"
HTTP = ("fastapi", "starlette", "uvicorn", "api.http")
"""What only api/http (and the CLI that starts it) may import."""


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_graph_never_imports_api() -> None:
    files = list(GRAPH.glob("*.py"))
    assert files
    for path in files:
        bad = {name for name in _imports(path) if name == "api" or name.startswith("api.")}
        assert not bad, f"{path.name} imports {bad}"


def test_graph_never_reads_the_environment() -> None:
    for path in GRAPH.glob("*.py"):
        source = path.read_text()
        assert "os.environ" not in source and "getenv" not in source, path.name


FLOORS = [
    ["settings"],
    ["config_files"],
    ["storage"],
    ["telemetry"],
    ["backend"],
    ["runs"],
    ["http"],
    ["cli", "langgraph_app"],
]
"""api/'s wings and loose modules from the ground up: each imports only what stands lower."""
FLOOR = {part: level for level, parts in enumerate(FLOORS) for part in parts}


def _part(name: str) -> str | None:
    """The wing or loose module of api/ that a module name is in."""
    parts = name.split(".")
    return parts[1] if parts[0] == "api" and len(parts) > 1 else None


def test_every_part_of_api_has_a_floor() -> None:
    parts = {path.stem for path in (ROOT / "api").glob("*.py")} | {
        path.name for path in (ROOT / "api").iterdir() if (path / "__init__.py").exists()
    }
    assert parts - {"__init__"} == set(FLOOR)


def test_api_imports_point_down() -> None:
    for path in (ROOT / "api").glob("**/*.py"):
        own = _part(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if own is None or own == "__init__":
            continue
        up = {
            name
            for name in _imports(path)
            if (part := _part(name)) and part != own and FLOOR[part] > FLOOR[own]
        }
        assert not up, f"{path.relative_to(ROOT)} ({own}) imports from higher up: {up}"


def _is_http(name: str) -> bool:
    return any(name == top or name.startswith(f"{top}.") for top in HTTP)


@pytest.mark.parametrize("wing", ["runs", "storage"])
def test_the_run_service_and_storage_know_no_http(wing: str) -> None:
    files = list((ROOT / "api" / wing).glob("**/*.py"))
    assert files
    for path in files:
        bad = {name for name in _imports(path) if _is_http(name)}
        assert not bad, f"api/{wing}/{path.name} imports {bad}"


def test_the_http_check_sees_http() -> None:
    assert _is_http("fastapi.responses") and _is_http("api.http.errors") and _is_http("starlette")
    assert not _is_http("api.https") and not _is_http("fastapiish") and not _is_http("api.runs")
