"""Assembles the state machine: planner → workers (fan-out) → critic ⇄ workers → synthesizer."""

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graph.context import RunContext
from graph.models import Models
from graph.nodes import Nodes
from graph.routing import after_critic, fan_out
from graph.state import InputState, OutputState, State

Graph = CompiledStateGraph[State, RunContext, InputState, OutputState]


def build_graph(models: Models) -> Graph:
    """Compile the reasoning graph around the given models.

    No node retries: model calls run their own retry loop (see ``graph.calls``) so that
    every attempt lands in the ledger and client errors are never retried.
    """
    nodes = Nodes(models)
    builder = StateGraph(State, context_schema=RunContext, input_schema=InputState, output_schema=OutputState)
    builder.add_node("planner", nodes.planner)
    builder.add_node("worker", nodes.worker)
    builder.add_node("critic", nodes.critic)
    builder.add_node("synthesizer", nodes.synthesizer)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges("planner", fan_out, ["worker"])
    builder.add_edge("worker", "critic")
    builder.add_conditional_edges("critic", after_critic, ["worker", "synthesizer"])
    builder.add_edge("synthesizer", END)
    return builder.compile(name="reasoner")
