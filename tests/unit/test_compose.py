"""deploy/compose.yaml, checked without a Docker engine (none exists on these machines): it
validates against the Compose specification's JSON Schema, everything it mounts or builds
exists in the repository, NetScope's config inside it loads, and it keeps the project's
security defaults (ports on 127.0.0.1 only, pinned images, no secret in the config file)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator

from netscope.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_it_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    errors = sorted(Draft201909Validator(schema).iter_errors(compose), key=str)
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_the_stack_runbook_section_2_needs_is_all_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {
        "kafka", "rgw", "postgres", "netscope", "upstream-sim", "loadgen", "prometheus",
        "alertmanager", "grafana",
    }  # fmt: skip
    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_every_mounted_or_built_path_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):  # a bind mount, not a named volume
                assert (DEPLOY / source).resolve().exists(), f"{name}: {source} is missing"
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_ports_are_published_on_loopback_only_and_images_pinned(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        image = service.get("image", "")
        if "build" not in service:
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), (name, image)


def test_netscopes_config_in_the_stack_loads_and_holds_no_secret(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose["services"]["netscope"]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, value)
    path = DEPLOY / "compose" / "netscope.toml"
    settings = load_settings(path)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.ledger.backend == "postgresql" and settings.audit.backend == "s3"
    text = path.read_text()
    for value in service["environment"].values():
        assert value not in text, "secrets come from the environment, not the file"
    for upstream in settings.upstreams.values():
        host = upstream.base_url.split("//")[1].split(":")[0]
        assert host in compose["services"], f"{upstream.base_url}: no such service"


def test_prometheus_in_the_stack_scrapes_netscope_and_loads_the_shipped_rules(
    compose: dict[str, Any],
) -> None:
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]  # fmt: skip
    assert "netscope:8080" in targets
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"]
                  if v.startswith("."))  # fmt: skip
    assert set(prom["rule_files"]) <= set(mounts.values())
