"""Where the graph goes after the critic: back to the workers, or on to the answer."""

from typing import Literal

from graph.state import State


def after_critic(state: State) -> Literal["reviser", "synthesizer"]:
    """Re-answer what the critic flagged (and what depends on it), else write the answer."""
    return "reviser" if state["pending"] else "synthesizer"
