"""docker-compose.yml and the Dockerfile: valid for docker-compose, and shaped for production.

No Docker engine is needed: ``docker-compose config`` (Debian's 1.29, installed by ``make test``) validates and
resolves the file; ``docker compose config`` (the v2 plugin) is run as well where it exists. The stack itself is
never started here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ADMIN_TOKEN = secrets.token_urlsafe(32)
POSTGRES_PASSWORD = secrets.token_urlsafe(18)
#: Services that run by default; everything else must sit behind a profile.
DEFAULT_SERVICES = {"kafka", "postgres", "topics", "api", "worker"}
HOLMES_SERVICES = {"topics", "api", "worker", "worker-gpu", "simulator"}
SECRET_KEY = re.compile(r"TOKEN|PASSWORD|SECRET|CREDENTIAL|_KEY$")
REQUIRED_REF = re.compile(r"\$\{[A-Z0-9_]+:\?[^}]*\}")


def _compose_v1() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed: `make test` installs it (apt-get install --no-install-recommends "
                    "docker-compose); this test validates docker-compose.yml with it and must not be skipped")
    return found


def _has_compose_v2() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False)
    return probe.returncode == 0


def _clean_env() -> dict[str, str]:
    """The test's environment without anything the compose file interpolates (the env file decides)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("HOLMES_", "POSTGRES_", "KAFKA_", "COMPOSE_", "DOCKER_"))}


def _run(command: list[str], env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, "--env-file", str(env_file), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), *args],
        capture_output=True, text=True, timeout=120, env=_clean_env(), check=False,
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .env with the two required secrets (random per run), as an operator would write it."""
    path = tmp_path_factory.mktemp("compose") / "test.env"
    path.write_text(f"HOLMES_ADMIN_TOKEN={ADMIN_TOKEN}\nPOSTGRES_PASSWORD={POSTGRES_PASSWORD}\n")
    return path


@pytest.fixture(scope="module")
def resolved(env_file: Path) -> dict[str, Any]:
    """``docker-compose config`` with every profile: the file as the engine would get it."""
    result = _run([_compose_v1()], env_file, "--profile", "sim", "--profile", "gpu", "config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The file as written (anchors merged, ``${...}`` not interpolated)."""
    config: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return config


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_strings(item)
    elif node is not None:
        yield str(node)


# -- validity ------------------------------------------------------------------------------------------


def test_compose_config_validates(env_file: Path) -> None:
    result = _run([_compose_v1()], env_file, "config", "-q")
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stderr}"
    for profile in ("sim", "gpu"):
        result = _run([_compose_v1()], env_file, "--profile", profile, "config", "-q")
        assert result.returncode == 0, f"--profile {profile}:\n{result.stderr}"
    if _has_compose_v2():
        docker = shutil.which("docker")
        assert docker is not None
        result = _run([docker, "compose"], env_file, "--profile", "sim", "--profile", "gpu", "config", "-q")
        assert result.returncode == 0, f"docker compose config -q failed:\n{result.stderr}"


@pytest.mark.parametrize("missing", ["HOLMES_ADMIN_TOKEN", "POSTGRES_PASSWORD"])
def test_compose_refuses_to_run_without_each_secret(tmp_path: Path, missing: str) -> None:
    values = {"HOLMES_ADMIN_TOKEN": ADMIN_TOKEN, "POSTGRES_PASSWORD": POSTGRES_PASSWORD}
    partial = tmp_path / "partial.env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in values.items() if k != missing))
    result = _run([_compose_v1()], partial, "config", "-q")
    assert result.returncode != 0
    assert missing in result.stderr, result.stderr


# -- structure -----------------------------------------------------------------------------------------


def test_services_and_profiles(resolved: dict[str, Any], raw: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == DEFAULT_SERVICES | {"simulator", "worker-gpu"}
    defaults = {name for name, s in raw["services"].items() if not s.get("profiles")}
    assert defaults == DEFAULT_SERVICES
    assert services["simulator"]["profiles"] == ["sim"]
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert "zookeeper" not in yaml.safe_dump(resolved).lower()


def test_kafka_runs_in_kraft_mode(resolved: dict[str, Any]) -> None:
    kafka = resolved["services"]["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert tuple(int(p) for p in tag.split(".")[:2]) >= (3, 8), tag
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENERS"]
    assert not [k for k in env if "ZOOKEEPER" in k]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # only the topics job creates topics
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "/var/lib/kafka/data" in " ".join(_walk_strings(kafka.get("volumes")))  # on a named volume
    # The external listener is published on loopback unless the operator says otherwise (PLAINTEXT, no auth).
    assert "${HOLMES_KAFKA_EXTERNAL_BIND:-127.0.0.1}" in COMPOSE_FILE.read_text()


def test_every_service_has_a_restart_policy_and_a_health_decision(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, name
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck section"
        if check.get("disable") or check.get("test") == ["NONE"]:  # docker-compose 1.29 writes disable as NONE
            # Only jobs and the load generator may go without a probe; they restart when they fail.
            assert name in {"topics", "simulator"} and service["restart"] == "on-failure", name
        else:
            assert check["test"] and check["test"][0] in {"CMD", "CMD-SHELL"}, name
            assert service["restart"] == "unless-stopped", name


def test_health_checks_probe_something_meaningful(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert "kafka-broker-api-versions.sh" in " ".join(services["kafka"]["healthcheck"]["test"])
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("worker", "worker-gpu"):
        worker = services[name]
        command = worker["command"]
        ready_file = command[command.index("--ready-file") + 1]
        probe = " ".join(worker["healthcheck"]["test"])
        assert ready_file in probe and "stats.json" in probe, name
        # Ready file and stats on a tmpfs: a restarted container starts unhealthy, not with the last run's files.
        assert any(str(t).startswith(str(Path(ready_file).parent)) for t in worker["tmpfs"]), name
        assert _env(worker)["HOLMES_STATE_DIR"].startswith(str(Path(ready_file).parent)), name


def test_start_order_waits_on_health_and_the_topic_job(resolved: dict[str, Any]) -> None:
    services = resolved["services"]

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("topics") == {"kafka": "service_healthy"}
    assert conditions("api") == {"kafka": "service_healthy", "postgres": "service_healthy",
                                 "topics": "service_completed_successfully"}
    for name in ("worker", "worker-gpu"):
        assert conditions(name) == {"kafka": "service_healthy", "topics": "service_completed_successfully"}
    assert conditions("simulator") == {"topics": "service_completed_successfully"}
    # holmes broker with HOLMES_KAFKA_BOOTSTRAP set starts no embedded broker: it creates the topics and exits.
    assert services["topics"]["command"] == ["broker"]
    assert _env(services["topics"])["HOLMES_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_workers_scale(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, service in services.items():
        assert "container_name" not in service, f"{name}: a fixed container_name prevents --scale"
    for name in ("worker", "worker-gpu"):
        assert "ports" not in services[name], f"{name}: fixed host ports prevent --scale"
    envs = {name: _env(services[name]) for name in HOLMES_SERVICES}
    # One set of topics and one consumer group for every process; enough partitions for many workers.
    assert len({e["HOLMES_TOPIC_PREFIX"] for e in envs.values()}) == 1
    assert len({e["HOLMES_WAVEFORM_PARTITIONS"] for e in envs.values()}) == 1
    assert int(envs["worker"]["HOLMES_WAVEFORM_PARTITIONS"]) >= 16


def test_gpu_worker_is_a_cuda_build_with_a_gpu_reservation(resolved: dict[str, Any]) -> None:
    gpu = resolved["services"]["worker-gpu"]
    assert _env(gpu)["HOLMES_DEVICE"] == "cuda"
    assert _env(resolved["services"]["worker"])["HOLMES_DEVICE"] == "cpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "/whl/cpu" not in gpu["build"]["args"]["TORCH_INDEX_URL"]
    assert gpu["image"] != resolved["services"]["worker"]["image"]


def test_configuration_is_environment_only_and_secrets_are_never_literal(
    resolved: dict[str, Any], raw: dict[str, Any]
) -> None:
    for name in HOLMES_SERVICES:
        service = resolved["services"][name]
        assert service["command"][0] in {"broker", "api", "worker", "simulate"}, name
        env = _env(service)
        assert all(k.startswith("HOLMES_") for k in env), (name, sorted(env))
        # No configuration file is mounted: volumes hold data and state only.
        for volume in _walk_strings(service.get("volumes")):
            assert not volume.endswith((".env", ".toml", ".ini", ".yaml", ".yml", ".json")), (name, volume)
    assert _env(resolved["services"]["api"])["HOLMES_ENV"] == "production"
    # Secrets come from the environment (here: the test's env file) and nowhere else.
    assert _env(resolved["services"]["api"])["HOLMES_ADMIN_TOKEN"] == ADMIN_TOKEN
    assert _env(resolved["services"]["postgres"])["POSTGRES_PASSWORD"] == POSTGRES_PASSWORD
    assert f":{POSTGRES_PASSWORD}@postgres:" in _env(resolved["services"]["api"])["HOLMES_DATABASE_URL"]
    for name, service in raw["services"].items():
        for key, value in _env(service).items():
            if SECRET_KEY.search(key):
                assert REQUIRED_REF.fullmatch(value), f"{name}.{key} must be ${{VAR:?message}}, not {value!r}"
            for userinfo in re.findall(r"://[^/@\s]+:([^/@\s]+)@", value):
                assert REQUIRED_REF.fullmatch(userinfo), f"{name}.{key}: a literal password in a URL"
    text = COMPOSE_FILE.read_text()
    assert ADMIN_TOKEN not in text and POSTGRES_PASSWORD not in text


# -- image ---------------------------------------------------------------------------------------------


def _torch_pin(text: str) -> str:
    found = set(re.findall(r"torch==([0-9][0-9.]*[0-9])", text))
    assert len(found) == 1, found
    return found.pop()


def test_dockerfile_pins_the_cpu_torch_and_runs_unprivileged() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    arg = re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.M)
    assert arg is not None
    assert arg.group(1) == _torch_pin((REPO / "pyproject.toml").read_text()) == _torch_pin(
        (REPO / "Makefile").read_text())
    index = re.search(r"^ARG TORCH_INDEX_URL=(\S+)$", dockerfile, re.M)
    assert index is not None and index.group(1).endswith("/whl/cpu")
    lines = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    users = [i for i, line in enumerate(lines) if line.startswith("USER ")]
    installs = [i for i, line in enumerate(lines) if "pip install" in line]
    assert users and users[-1] > installs[-1]
    assert lines[users[-1]].split()[1].split(":")[0] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["holmes"\]$', dockerfile, re.M)
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", ".holmes"} <= ignored
