"""Which tools a run may use: the service's set (TOOLS), narrowed by a request, never widened."""

import pytest

from api.backend.tools import offered_tools
from api.runs.admission import tools_for
from api.runs.errors import Refused
from api.settings import ConfigurationError, Settings
from graph.tools import CALCULATOR, Tool

SEARCH = Tool("search", "looks things up", {"type": "object"}, CALCULATOR.run)


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_every_tool_by_default_and_none_with_the_embedded_model() -> None:
    assert list(offered_tools(settings(), embedded=False, connected={"search": SEARCH})) == [
        "calculator",
        "search",
    ]
    assert offered_tools(settings(), embedded=True, connected={"search": SEARCH}) == {}


def test_tools_names_the_set_and_a_name_that_is_no_tool_stops_the_start() -> None:
    assert list(offered_tools(settings(tools="search"), embedded=True, connected={"search": SEARCH})) == [
        "search"
    ]
    assert offered_tools(settings(tools=""), embedded=False) == {}
    with pytest.raises(ConfigurationError, match="TOOLS names calculater, which is no tool here"):
        offered_tools(settings(tools="calculator, calculater"), embedded=False)


def test_a_request_narrows_the_set_and_cannot_widen_it() -> None:
    offered = {"calculator": CALCULATOR}
    assert tools_for(None, offered) == offered
    assert tools_for([], offered) == {}
    with pytest.raises(Refused) as refused:
        tools_for(["calculator", "search"], offered)
    assert (refused.value.code, refused.value.param) == ("tool_not_offered", "tools")
