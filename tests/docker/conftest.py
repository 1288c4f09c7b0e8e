"""The engine and the project's image, once for `make test-docker` (``-m docker``)."""

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPORT
from tests.docker.engine import Engine, engine
from tests.docker.images import ensure_base

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "reasoner:latest"
"""The name docker-compose.yml gives the project's image."""

HOST_CA_CERTIFICATES = Path("/usr/local/share/ca-certificates")
"""The local CA certificates `update-ca-certificates` installs (a TLS-intercepting proxy's)."""


@pytest.fixture(scope="session")
def docker() -> Iterator[Engine]:
    with engine() as running:
        yield running


@pytest.fixture(scope="session")
def image(docker: Engine) -> str:
    """The project's image, built as docs/operations.md says, trusting this host's local CA
    certificates in its build stage (copied to deploy/ca-certificates/, ignored by git)."""
    how = ensure_base(docker)
    for certificate in HOST_CA_CERTIFICATES.glob("*.crt"):
        shutil.copy(certificate, ROOT / "deploy" / "ca-certificates" / certificate.name)
    started = time.monotonic()
    docker.run("build", "-t", IMAGE, str(ROOT), timeout=3600)
    built_s = time.monotonic() - started
    size = int(docker.run("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    REPORT.append(f"docker: base image {how}; project image built in {built_s:.0f} s, {size / 1e6:.0f} MB")
    return IMAGE
