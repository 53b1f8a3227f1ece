"""The deploy files users run where this machine cannot (no Docker engine, no systemd as
PID 1): the compose file against the Compose Specification's schema, and the systemd units
for the services the compose file runs."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHECK = Path(sys.executable).with_name("check-jsonschema")


def test_the_compose_file_is_valid_compose_spec() -> None:
    done = subprocess.run(
        [str(CHECK), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "docker-compose.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_fails_on_a_broken_compose_file(tmp_path: Path) -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    doc["services"]["api"]["ports"] = {"not": "a list"}
    broken = tmp_path / "compose.yml"
    broken.write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [str(CHECK), "--builtin-schema", "vendor.compose-spec", str(broken)], capture_output=True, check=False
    )
    assert done.returncode == 1


def test_each_long_running_service_connects_with_its_own_least_privilege_login() -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    login = {
        name: services[name]["environment"]["DATABASE_URL"].split("//", 1)[1].split(":", 1)[0]
        for name in ("ingest-1", "ingest-2", "analyze", "watchdog", "api")
    }
    assert login == {
        "ingest-1": "slopewatch_ingest_login",
        "ingest-2": "slopewatch_ingest_login",
        "analyze": "slopewatch_analyze_login",
        "watchdog": "slopewatch_analyze_login",
        "api": "slopewatch_api_login",
    }
    # Only TLS is published for MQTT, the API only on the host's loopback.
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert all(not str(p).startswith("1883") for p in services["mosquitto"].get("ports", []))


def test_the_systemd_target_starts_every_unit_shipped() -> None:
    units = {p.name for p in (DEPLOY / "systemd").glob("*.service") if "@" not in p.name}
    target = configparser.ConfigParser(strict=False, interpolation=None)
    target.read(DEPLOY / "systemd" / "slopewatch.target")
    assert set(target["Unit"]["Wants"].split()) == units
    for name in units | {"slopewatch-ingest@.service"}:
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read(DEPLOY / "systemd" / name)
        assert unit["Service"]["ExecStart"].startswith("/opt/slopewatch/venv/bin/slopewatch "), name
        if name != "slopewatch-migrate.service":
            assert unit["Service"].get("User", "").startswith("slopewatch-"), f"{name} runs as its own user"
