"""Settings come from QC_* variables, a .env file, or the YAML named by QC_CONFIG; the
environment wins; everything lives under QC_HOME."""

from __future__ import annotations

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
