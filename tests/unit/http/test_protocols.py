"""HTTP_PARSER picks the protocol `reasoner serve` reads requests with: httptools unless asked
for h11, each with the same guard."""

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.http.protocols import Guarded, guarded_protocol
from api.settings import Settings

CHOICES = [("auto", HttpToolsProtocol), ("httptools", HttpToolsProtocol), ("h11", H11Protocol)]


@pytest.mark.parametrize(("choice", "parser"), CHOICES)
def test_the_server_reads_requests_with_the_parser_http_parser_names(choice: str, parser: type) -> None:
    settings = Settings(_env_file=None, http_parser=choice, max_connections=8)  # type: ignore[call-arg]
    protocol = guarded_protocol(settings)
    assert issubclass(protocol, parser) and issubclass(protocol, Guarded)
    assert protocol.limits.slots.max_connections == 8


def test_each_server_counts_its_own_connections() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert guarded_protocol(settings).limits.slots is not guarded_protocol(settings).limits.slots
