"""The command line's small promises: `qc --version`, and `--json` on every list command
(an empty list is `[]` on stdout, so a script never parses a hint meant for people).

    PYTHONPATH=. python -m pytest -q tests/test_cli.py
"""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from qc.cli import app

LIST_COMMANDS = [["models", "list"], ["stations", "list"], ["keys", "list"], ["dataset", "list"]]


@pytest.fixture
def qc(qc_home):
    """Runs `qc ARGS...` in an empty QC_HOME; stdout and stderr apart."""

    def run(*args: str):
        return CliRunner().invoke(app, list(args))

    return run


def test_version_prints_the_installed_package_version(qc):
    result = qc("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"qc {version('qc')}"


@pytest.mark.parametrize("command", LIST_COMMANDS, ids=" ".join)
def test_every_list_command_prints_an_empty_json_list_on_stdout_alone(qc, command):
    result = qc(*command, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert result.stderr == "", "no hint for people when a script asked for JSON"


def test_list_commands_print_what_is_stored_as_json(qc, qc_home, tmp_path):
    from inspection.models.registry import Registry

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx bytes")
    registry = Registry(qc_home / "models")
    registry.add("pcb", model)
    registry.set_production("pcb", "v1")
    assert qc("stations", "add", "line1-cam2", "--description", "first camera").exit_code == 0
    key_id = qc("keys", "create", "--role", "station", "--station", "line1-cam2").stdout.strip()

    models = json.loads(qc("models", "list", "--json").stdout)
    stations = json.loads(qc("stations", "list", "--json").stdout)
    keys = json.loads(qc("keys", "list", "--json").stdout)

    assert models == [{"name": "pcb", "versions": ["v1"], "production": "v1"}]
    assert [(s["id"], s["rules_version"], s["enabled"]) for s in stations] == [("line1-cam2", 1, True)]
    assert stations[0]["description"] == "first camera" and "default" in stations[0]["rules"]
    assert [(k["role"], k["stations"], k["active"]) for k in keys] == [("station", ["line1-cam2"], True)]
    assert keys[0]["id"] in key_id, "the id, never the key"
    assert key_id not in json.dumps(keys)
