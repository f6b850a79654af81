"""The loop speaks Korean on the Loop page, as a specification: what `qc loop --check` lists
(training/loop_check.py, serving/turns.py) and what a turn says while it runs and when it ends
(training/loop.py) read back in Korean from loop.po, commands kept as commands; a message no
catalogue entry knows stays as it was; a turn started from a terminal says who and where."""

from __future__ import annotations

import re

import pytest

from serving.pages.loop_messages import translate
from training.loop import LoopSettings
from training.loop_check import check_loop

HANGUL = re.compile(r"[\uac00-\ud7a3]")
COMMAND = re.compile(r"(qc|pip install|export) [^()]*")  # a fix that is only a command needs no words


def _korean(text: str) -> bool:
    return bool(HANGUL.search(translate(text, "ko")))


@pytest.mark.parametrize("registered", [False, True], ids=["empty home", "an ONNX-only production model"])
def test_every_need_of_a_turn_is_said_in_korean_and_each_fix_in_words_too(registered, tmp_path, untrained_model):
    settings = LoopSettings(home=tmp_path)
    settings.ensure_dirs()
    if registered:
        from inspection.models.registry import Registry

        registry = Registry(settings.models_dir)
        registry.add("default", untrained_model, card={})
        registry.set_production("default", "v1")
    report = check_loop(settings, probe=False)
    for need in report.needs:
        assert _korean(need.says), need.says
        assert not need.fix or _korean(need.fix) or COMMAND.fullmatch(need.fix), need.fix
    if registered:  # the note that the model has no .pt weights, with its nested "the recipe's model"
        [weights] = [n for n in report.needs if n.item == "weights"]
        assert "레시피의 모델" in translate(weights.says, "ko")


def test_what_the_service_says_when_the_check_cannot_run_is_korean_too():
    from serving.turns import _unanswered

    [need] = _unanswered("timed out after 30 seconds")["needs"]
    assert translate(need["says"], "ko") == "여기에서 qc loop --check가 응답하지 않음: timed out after 30 seconds"
    assert _korean(need["fix"])


@pytest.mark.parametrize("message", [
    "starting",
    "pulling annotations from Label Studio",
    "counting new labelled images in line",
    "fine-tuning default@v1 on line@v3",
    "training from the recipe on line@v3 (default@v1 has no .pt weights)",
    "fine-tuning: epoch 3/10",
    "fine-tuning: epoch 3/10, val mAP50 0.412",
    "exporting and registering the candidate",
    "scoring v1 and v2 on the holdout holdout@v1",
    "re-judging this turn's labelled frames with both models",
    "train done",
    "Label Studio not configured; using the dataset as it is",
    "dataset line has no version yet: push frames and pull their labels",
    "12 new labelled images in line@v3, 50 needed (QC_LOOP_MIN_NEW)",
    ("12 labelled images in line@v3 not in line@v2, which the production model learnt from; 50 needed "
     "(QC_LOOP_MIN_NEW); a turn now would be skipped"),
    "qc loop could not start: [Errno 2] No such file or directory",
])
def test_what_a_turn_says_while_it_runs_and_when_it_ends_reads_in_korean(message):
    said = translate(message, "ko")
    assert HANGUL.search(said), message
    # Names, versions and numbers come through as they were.
    for value in re.findall(r"[\w.]+@v\d+|\d+/\d+|0\.\d+", message):
        assert value in said


def test_the_longest_pattern_wins_and_unknown_text_stays_english():
    assert translate("fine-tuning: epoch 3/10, val mAP50 0.412", "ko") == "미세 조정: 에포크 3/10, 검증 mAP50 0.412"
    assert translate("KeyError: 'names'", "ko") == "KeyError: 'names'"
    assert translate("train done", "en") == "train done"
    assert translate(None, "ko") == ""


def test_a_turn_started_from_the_command_line_records_who_and_where(tmp_path, monkeypatch):
    import getpass
    import socket

    from typer.testing import CliRunner

    from inspection.store.database import Database
    from inspection.store.jobs import JobKind, JobStore
    from qc.cli import app

    monkeypatch.setenv("QC_HOME", str(tmp_path))
    monkeypatch.delenv("QC_DATABASE_URL", raising=False)
    ran = CliRunner().invoke(app, ["loop"])  # no production model: the turn fails at once, recorded
    assert ran.exit_code == 2, ran.output
    db = Database.from_settings(LoopSettings(home=tmp_path))
    try:
        [job] = JobStore(db).recent(JobKind.LOOP)
    finally:
        db.dispose()
    assert job.params["via"] == "cli"
    assert job.created_by == f"{getpass.getuser()}@{socket.gethostname()}"


def test_the_gates_table_becomes_rows_for_the_page_and_anything_else_stays_text():
    from inspection.models.gate import compare
    from serving.routers.pages.loop import gate_rows

    table = compare({"map50_95": 0.5, "per_class": {"solder bridge": {"recall": 0.9}}},
                    {"map50_95": 0.52, "per_class": {"solder bridge": {"recall": 0.8}}}).table()
    assert gate_rows(table) == [
        {"metric": "mAP50-95", "candidate": "0.5200", "production": "0.5000", "change": "+0.0200",
         "allowed": "-0.0050", "result": "ok"},
        {"metric": "recall[solder bridge]", "candidate": "0.8000", "production": "0.9000", "change": "-0.1000",
         "allowed": "-0.0200", "result": "REFUSED"}]
    assert gate_rows("no production model to compare with") is None
    assert translate("no production model to compare with", "ko") == "비교할 운영 모델이 없음"
