"""Assembles the state machine: planner (which dispatches the workers) → critic ⇄ reviser →
synthesizer."""

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graph.context import RunContext
from graph.models import Models
from graph.nodes import Nodes
from graph.routing import after_critic
from graph.state import InputState, OutputState, State
from graph.tokens import TokenCounter

Graph = CompiledStateGraph[State, RunContext, InputState, OutputState]


def build_graph(
    models: Models,
    *,
    checkpointer: BaseCheckpointSaver[str] | None = None,
    counter: TokenCounter | None = None,
) -> Graph:
    """Compile the reasoning graph around the given models; with a ``checkpointer``, each run's
    state is saved after every step under ``thread_id`` = its run id, so that it can resume.
    ``counter`` counts the question for the output state's ``usage`` (see ``Nodes``).

    No node retries: model calls run their own retry loop (see ``graph.calls``) so that
    every attempt lands in the ledger and client errors are never retried.
    """
    nodes = Nodes(models, counter)
    builder = StateGraph(State, context_schema=RunContext, input_schema=InputState, output_schema=OutputState)
    builder.add_node("planner", nodes.planner)
    builder.add_node("critic", nodes.critic)
    builder.add_node("reviser", nodes.reviser)
    builder.add_node("synthesizer", nodes.synthesizer)
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "critic")
    builder.add_conditional_edges("critic", after_critic)
    builder.add_edge("reviser", "critic")
    builder.add_edge("synthesizer", END)
    return builder.compile(name="reasoner", checkpointer=checkpointer)
