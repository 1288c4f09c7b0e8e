"""The images `make test-docker` needs that this machine cannot pull from Docker Hub.

Each is pulled where the Hub answers. Where it does not, Debian's base is made with debootstrap
and imported under the name the Dockerfile uses, and the compose file's postgres, redis and nginx
are stood in for by images built from Debian's packages (``stand-ins/``) under the names the
compose file uses: the files users run are the files tested. A name that is already present
is used as it is, unless it is a stand-in: those are built again (from the build cache when
their Dockerfile has not changed).
"""

import subprocess
import tempfile
from pathlib import Path

import yaml

from tests.docker.engine import Engine, EngineError

BASE = "debian:bookworm-slim"
"""The Dockerfile's default ``BASE``; the stand-ins are built on it too."""

MIRROR = "http://deb.debian.org/debian"
STAND_INS = Path(__file__).parent / "stand-ins"
STAND_IN_LABEL = "reasoner.stand-in"
PULL_TIMEOUT_S = 60


def third_party_images(compose_file: Path) -> list[str]:
    """The images the compose file pulls (every service without a ``build``)."""
    services = yaml.safe_load(compose_file.read_text())["services"]
    return sorted({s["image"] for s in services.values() if "build" not in s})


def ensure_base(engine: Engine) -> str:
    """``BASE``, and how it came: present, pulled or made."""
    if engine.has_image(BASE):
        return "present"
    if _pulled(engine, BASE):
        return "pulled"
    with tempfile.TemporaryDirectory(prefix="reasoner-rootfs-") as root:
        made = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", root, MIRROR],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            said = made.stdout[-2000:] + made.stderr[-2000:]
            raise EngineError(f"debootstrap failed ({made.returncode}):\n{said}")
        with subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE) as tar:
            imported = subprocess.run(
                [engine.client, "import", "-", BASE],
                stdin=tar.stdout,
                env=engine.env,
                capture_output=True,
                text=True,
            )
    if imported.returncode != 0:
        raise EngineError(f"docker import failed:\n{imported.stderr[-2000:]}")
    return "made with debootstrap"


def ensure_third_party(engine: Engine, name: str) -> str:
    """The image ``name`` (postgres:16, …), and how it came: present, pulled or a stand-in."""
    if engine.has_image(name) and not _is_stand_in(engine, name):
        return "present"
    if _pulled(engine, name):
        return "pulled"
    context = STAND_INS / name.split(":")[0]
    if not (context / "Dockerfile").exists():
        raise EngineError(f"{name} cannot be pulled and there is no stand-in for it in {STAND_INS}")
    build = ["build", "--build-arg", f"BASE={BASE}", "--label", f"{STAND_IN_LABEL}=true"]
    engine.run(*build, "-t", name, str(context), timeout=900)
    return "stand-in"


def _is_stand_in(engine: Engine, name: str) -> bool:
    label = f'{{{{index .Config.Labels "{STAND_IN_LABEL}"}}}}'
    return engine.run("image", "inspect", "--format", label, name).stdout.strip() == "true"


def _pulled(engine: Engine, name: str) -> bool:
    try:
        return engine.run("pull", "--quiet", name, check=False, timeout=PULL_TIMEOUT_S).returncode == 0
    except subprocess.TimeoutExpired:
        return False
