"""Dockerfile, docker-compose.yml and nginx.conf, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# the compose-spec JSON schema as shipped by docker-compose 1.29.2 (Apache-2.0), vendored for offline checks
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "compose_spec.json"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_matches_the_compose_spec_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.validate(compose(), schema, cls=jsonschema.Draft201909Validator)


def test_compose_topology() -> None:
    services = compose()["services"]
    assert set(services) == {"api", "redis", "nginx"}
    redis, api, nginx = services["redis"], services["api"], services["nginx"]

    assert re.fullmatch(r"redis:[\w.-]+", redis["image"])  # the official image
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert redis["volumes"] == ["redis-data:/data"] and "redis-data" in compose()["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"]

    assert api["deploy"]["replicas"] >= 2 and "ports" not in api  # only nginx is published
    assert api["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert "readyz" in " ".join(api["healthcheck"]["test"])
    env_file = ROOT / api["env_file"][0]
    settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and line[0] != "#")
    assert settings["FEWSHOT_AUTH_ENABLED"] == "true" and settings["FEWSHOT_STORE"] == "redis"
    assert settings["FEWSHOT_REDIS_URL"].startswith("redis://redis:")
    assert "KEY" not in "".join(settings)  # no secrets in the committed env file
    assert api["environment"]["FEWSHOT_ADMIN_KEY_SHA256"].startswith("${FEWSHOT_ADMIN_KEY_SHA256:?")

    assert nginx["image"].startswith("nginx:") and nginx["depends_on"] == {"api": {"condition": "service_healthy"}}
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server api:8000 resolve;" in conf and "proxy_pass http://fewshot_api;" in conf
    assert "X-Request-ID" in conf and "location = /metrics { return 404; }" in conf


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no compose CLI (Debian: apt-get install docker-compose)")
def test_compose_cli_accepts_the_file() -> None:
    cli = _compose_cli()
    assert cli is not None
    env = os.environ | {"FEWSHOT_ADMIN_KEY_SHA256": "0" * 64}
    done = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    missing = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "FEWSHOT_ADMIN_KEY_SHA256"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode != 0 and "FEWSHOT_ADMIN_KEY_SHA256" in missing.stderr  # refuses to start open


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_is_multi_stage_non_root_and_offline() -> None:
    instructions = dockerfile()
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(stages) >= 2 and all(" AS " in instructions[i][1].upper() for i in stages)
    before_first = instructions[: stages[0]]
    assert any(op == "ARG" and args.startswith("BASE_IMAGE=") for op, args in before_first)
    assert any(op == "ARG" and args.startswith("TORCH_INDEX_URL=") for op, args in before_first)
    assert all(instructions[i][1].startswith("${BASE_IMAGE}") for i in stages)

    final = instructions[stages[-1] :]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert any(op == "HEALTHCHECK" and "/readyz" in args for op, args in final)
    assert any(op == "COPY" and "models" in args for op, args in final)  # shipped checkpoint baked in
    env = " ".join(args for op, args in final if op == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "FEWSHOT_CHECKPOINT=/app/models/" in env
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "torch==2.13.0" in runs and "pip install ." in runs
    cmd = [args for op, args in final if op == "CMD"][-1]
    assert json.loads(cmd)[:2] == ["fewshot", "serve"]


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*" and {"!app/", "!models/", "!pyproject.toml"} <= set(lines)
