"""The reasoning engine: a LangGraph state machine of planner, workers, critic and synthesizer."""

from graph.builder import Graph, build_graph
from graph.context import RunContext
from graph.errors import ErrorKind, ModelCallError
from graph.ledger import CallRecord, NodeUsage, Price, Prices, Usage
from graph.models import Models, ModelSpec, openai_chat_model
from graph.result import Result, RunError, RunStatus
from graph.run import Emit, execute
from graph.tokens import LlamaCppCounter, TiktokenCounter, TokenCount, TokenCounter

__all__ = [
    "CallRecord",
    "Emit",
    "ErrorKind",
    "Graph",
    "LlamaCppCounter",
    "ModelCallError",
    "ModelSpec",
    "Models",
    "NodeUsage",
    "Price",
    "Prices",
    "Result",
    "RunContext",
    "RunError",
    "RunStatus",
    "TiktokenCounter",
    "TokenCount",
    "TokenCounter",
    "Usage",
    "build_graph",
    "execute",
    "openai_chat_model",
]
