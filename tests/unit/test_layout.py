"""Imports point one way: graph/ never imports api/, and never reads the environment."""

import ast
from pathlib import Path

GRAPH = Path(__file__).resolve().parents[2] / "graph"


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
