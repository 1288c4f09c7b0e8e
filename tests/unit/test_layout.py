"""Imports point one way: graph/ never imports api/, and never reads the environment; the run
service and storage (api/runs, api/storage) know no HTTP."""

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
