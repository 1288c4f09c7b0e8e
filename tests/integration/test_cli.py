"""The `reasoner` console script, run as a user would, against the scripted backend."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.stub_backend import MODEL_ENV, StubBackend

ROOT = Path(__file__).resolve().parents[2]


def reasoner(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_")) and k not in MODEL_ENV
    }
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ask_json_prints_the_result_object(stub: StubBackend, tmp_path: Path) -> None:
    env = {"LLM_BASE_URL": stub.base_url, **MODEL_ENV, "DATA_DIR": str(tmp_path)}
    done = reasoner("ask", "Why is the sky blue?", "--json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert result["usage"]["total_tokens"] == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)


def test_ask_shows_steps_and_the_token_table(stub: StubBackend, tmp_path: Path) -> None:
    env = {"LLM_BASE_URL": stub.base_url, **MODEL_ENV, "DATA_DIR": str(tmp_path)}
    done = reasoner("ask", "Why is the sky blue?", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (
        out.index("plan t1: Part 1 of the question?")
        < out.index("worker t1 done")
        < out.index("critic: t1 accept")
    )
    assert "plan complete: 3 sub-question(s)" in out
    assert "The final answer is 42." in out
    assert "synthesizer" in out and "reasoning" in out and "total" in out


def test_unreachable_backend_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        "LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "LLM_MODEL": "m",
        "LLM_MAX_ATTEMPTS": "1",
        "DATA_DIR": str(tmp_path),
    }
    done = reasoner("ask", "Q?", env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: upstream_unavailable: could not connect to the model backend"
    ]
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_model_name_is_a_configuration_error(tmp_path: Path) -> None:
    done = reasoner("ask", "Q?", env={"LLM_BASE_URL": "http://127.0.0.1:9/v1", "DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert "LLM_MODEL" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_setting_is_reported(tmp_path: Path) -> None:
    done = reasoner("ask", "Q?", env={"MAX_SUBTASKS": "zero", "DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert "max_subtasks" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_reader_that_goes_away_is_no_traceback(stub: StubBackend, tmp_path: Path) -> None:
    """`reasoner ask … | head -1`: the pipe closes while the run goes on."""
    stub.options.latency_s = 0.2
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_"))}
    env = {**clean, "LLM_BASE_URL": stub.base_url, **MODEL_ENV, "DATA_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "ask", "Why is the sky blue?"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"plan t1")
    process.stdout.close()
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "destroyed but it is pending" not in stderr, stderr


def test_a_malformed_keys_file_stops_serve_naming_the_entry(stub: StubBackend, tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text('keys:\n  - {name: alice, key: "sk-alice-0123456789", tokens_per_day: lots}\n')
    env = {"LLM_BASE_URL": stub.base_url, **MODEL_ENV, "DATA_DIR": str(tmp_path), "API_KEYS_FILE": str(keys)}
    done = reasoner("serve", "--port", "9", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: API_KEYS_FILE {keys}: keys[0] (alice).tokens_per_day: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]
