"""Settings come from QC_* variables, a .env file, or the YAML named by QC_CONFIG; the
environment wins; everything lives under QC_HOME."""

from __future__ import annotations

import pytest

from inspection.errors import ConfigError
from inspection.settings import Settings
from serving.settings import ServeSettings


def test_a_yaml_config_sets_values_and_the_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "qc.yaml"
    config.write_text(f"home: {tmp_path / 'state'}\nmax_batch: 4\nport: 9000\n")
    monkeypatch.setenv("QC_CONFIG", str(config))
    monkeypatch.delenv("QC_HOME", raising=False)
    monkeypatch.setenv("QC_PORT", "9100")
    settings = ServeSettings()
    assert settings.max_batch == 4 and settings.port == 9100
    assert settings.home == (tmp_path / "state").resolve()
    assert settings.db_url == f"sqlite:///{(tmp_path / 'state' / 'qc.db').resolve()}"
    assert settings.models_dir.parent == settings.home


def test_a_dotenv_file_in_the_working_folder_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QC_HOME", raising=False)
    monkeypatch.delenv("QC_CONFIG", raising=False)
    (tmp_path / ".env").write_text(f"QC_HOME={tmp_path / 'envhome'}\nQC_PASS_SAMPLE_RATE=0.5\n")
    settings = ServeSettings()
    assert settings.home == (tmp_path / "envhome").resolve() and settings.pass_sample_rate == 0.5


def test_a_qc_config_that_names_no_file_is_a_config_error_not_a_silent_default(tmp_path, monkeypatch):
    missing = tmp_path / "qc.yaml"
    monkeypatch.setenv("QC_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=f"QC_CONFIG={missing}: no such file; fix the path or unset"):
        ServeSettings()
    with pytest.raises(ConfigError, match="no such file"):
        Settings()


def test_a_qc_config_that_is_not_yaml_is_a_config_error_with_the_line(tmp_path, monkeypatch):
    config = tmp_path / "qc.yaml"
    config.write_text("home: [\nthreads: 2\n")
    monkeypatch.setenv("QC_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"qc.yaml: not valid YAML \(.* at line 3, column 1\)"):
        ServeSettings()
    config.write_text("- home\n- threads\n")
    with pytest.raises(ConfigError, match="holds a list, not keys"):
        ServeSettings()


def test_a_bad_value_names_the_key_its_variable_and_the_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("QC_CONFIG", raising=False)
    monkeypatch.setenv("QC_THREADS", "abc")
    with pytest.raises(ConfigError, match=r"threads \(QC_THREADS\).*valid integer.*got 'abc'"):
        Settings()
    monkeypatch.delenv("QC_THREADS")
    config = tmp_path / "qc.yaml"
    config.write_text("threads: lots\nport: 0\n")
    monkeypatch.setenv("QC_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        ServeSettings()
    message = str(caught.value)
    assert f"threads (QC_THREADS or `threads:` in {config})" in message and "'lots'" in message
    assert f"port (QC_PORT or `port:` in {config})" in message


def test_the_cli_prints_a_bad_setting_as_one_line_with_exit_code_2(monkeypatch, capsys):
    from qc import cli

    monkeypatch.delenv("QC_CONFIG", raising=False)
    monkeypatch.setenv("QC_THREADS", "abc")
    monkeypatch.setattr("sys.argv", ["qc", "models", "list"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid settings: threads (QC_THREADS)") and "Traceback" not in err


def test_the_dataset_pulled_labels_extend_is_resolved_in_one_place(tmp_path, monkeypatch):
    from labeling.settings import LabelSettings

    monkeypatch.delenv("QC_LABEL_DATASET", raising=False)
    settings = LabelSettings(home=tmp_path)
    assert settings.dataset_for("pcb@v3") == "pcb"  # the production model's dataset
    assert settings.dataset_for(None) == "line"  # a model trained elsewhere
    assert LabelSettings(home=tmp_path, label_dataset="bottles").dataset_for("pcb@v3") == "bottles"
