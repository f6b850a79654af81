"""The plant's compose file and its configs, as a specification: Debian's docker-compose accepts
it (`docker-compose config`, when installed); every command run in a qc container is a real
`qc` command with real options; every QC_ variable set is a real setting; the replicas share
one PostgreSQL and one S3 store; every qc_ metric the alert rules and the dashboard use is one
the service exports; nginx accepts its config (`nginx -t`, when installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from qc.cli import app
from serving.metrics import Metrics
from serving.settings import ServeSettings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / "plant.env.example"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def qc_services(spec: dict) -> dict[str, dict]:
    return {name: service for name, service in spec["services"].items()
            if "serve.Dockerfile" in json.dumps(service.get("build", {})) or
            str(service.get("image", "")).startswith("qc-")}


def exported_metrics() -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in Metrics().registry.collect()
            for suffix in suffixes.get(family.type, ("",))}


def used_metrics(text: str) -> set[str]:
    return set(re.findall(r"\bqc_[a-z_]+", text))


def test_the_replicas_share_one_database_and_one_image_store():
    services = qc_services(compose())
    assert {"qc-1", "qc-2", "migrate"} <= set(services)
    environments = [services[name]["environment"] for name in ("qc-1", "qc-2")]
    assert environments[0] == environments[1]
    assert environments[0]["QC_DATABASE_URL"].startswith("postgresql://")
    assert environments[0]["QC_IMAGE_STORE"].startswith("s3://")
    assert "models:/var/lib/qc/models" in services["qc-1"]["volumes"]  # one registry


def test_every_command_is_a_real_qc_command():
    runner = CliRunner()
    commands = [service["command"] for service in qc_services(compose()).values()]
    commands += [line.split("docker compose run --rm qc-1 ", 1)[1].split("  #")[0].split()
                 for line in COMPOSE.read_text().splitlines() if "docker compose run --rm qc-1 qc" in line]
    assert len(commands) >= 5
    for command in commands:
        assert command[0] == "qc", command
        options = [word for word in command[1:] if word.startswith("--")]
        words = [word for word in command[1:] if not word.startswith("-")]
        # The longest prefix that is a command: `qc keys create`, `qc models add`, `qc serve`.
        for end in range(len(words), 0, -1):
            result = runner.invoke(app, [*words[:end], "--help"])
            if result.exit_code == 0:
                break
        assert result.exit_code == 0, f"{command}: not a qc command ({result.output[-300:]})"
        for option in options:
            assert option in result.output, f"{command}: {option} is not an option of it"


def test_every_qc_variable_is_a_real_setting():
    known = {f"QC_{name.upper()}" for name in ServeSettings.model_fields}
    text = COMPOSE.read_text()
    used = set(re.findall(r"^\s+(QC_[A-Z0-9_]+)\s*:", text, re.MULTILINE))
    assert used, "the compose file sets QC_ variables"
    assert sorted(used - known) == []
    # Compose's own variables, from .env, are PLANT_*: a QC_ name there would look like a setting.
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert all(name.startswith("PLANT_") for name in interpolated), interpolated
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required <= set(re.findall(r"^([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def test_alerts_and_dashboard_use_metrics_the_service_exports():
    exported = exported_metrics()
    rules = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"QcReplicaDown", "QcQueueSaturated", "QcGpuProviderLost"} <= names
    for path in (DOCKER / "prometheus" / "alerts.yml", DOCKER / "grafana" / "dashboards" / "qc.json"):
        unknown = used_metrics(path.read_text()) - exported
        assert unknown == set(), f"{path.name}: {unknown}"
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "qc.json").read_text())
    assert all(panel["targets"][0]["expr"] for panel in dashboard["panels"])
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["qc-1:8000", "qc-2:8000"]
    assert job["authorization"]["type"] == "Bearer"  # /metrics needs a key


def test_docker_compose_accepts_it(tmp_path):
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose)")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    result = subprocess.run([tool, "--project-directory", str(DOCKER), "--env-file", str(tmp_path / ".env"),
                             "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    (tmp_path / "empty.env").write_text("")
    missing = subprocess.run([tool, "--project-directory", str(DOCKER), "--env-file", str(tmp_path / "empty.env"),
                              "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and "set PLANT_DB_PASSWORD in .env" in missing.stderr  # no default password


def test_nginx_accepts_its_config(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=qc",
                    "-keyout", str(tls / "qc.key"), "-out", str(tls / "qc.crt")], capture_output=True, check=True)
    site = (DOCKER / "nginx" / "qc.conf").read_text().replace("/etc/nginx/tls", str(tls))
    # The compose service names resolve inside the compose network only: 127.0.0.1 here.
    for host in ("qc-1", "qc-2", "grafana"):
        site = site.replace(f"{host}:", "127.0.0.1:")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path};\n include {tmp_path}/site.conf;\n}}\n")
    result = subprocess.run([nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
