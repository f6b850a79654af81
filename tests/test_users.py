"""`qc users` from the command line: add, list, disable, passwd; errors are one line naming the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inspection.settings import Settings
from inspection.store.database import Database
from inspection.store.users import LoginRefused, UserStore


def qc(*args: str, password: str | None = None) -> subprocess.CompletedProcess:
    env = None
    if password is not None:
        import os

        env = {**os.environ, "QC_USER_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "qc", "users", *args], check=False, capture_output=True, text=True, env=env)


def test_users_are_added_listed_disabled_and_given_new_passwords(qc_home):
    added = qc("add", "kim", "--role", "engineer", "--display-name", "Kim Jiwoo", password="first-password-1")
    assert added.returncode == 0, added.stderr
    assert "kim" in qc("list").stdout and "engineer\tactive\tKim Jiwoo" in qc("list").stdout
    users = UserStore(Database.from_settings(Settings()))
    assert users.authenticate("kim", "first-password-1").display_name == "Kim Jiwoo"
    assert qc("disable", "kim").returncode == 0
    assert "disabled" in qc("list").stdout
    with pytest.raises(LoginRefused):
        users.authenticate("kim", "first-password-1")
    assert qc("passwd", "kim", password="second-password-2").returncode == 0
    assert users.authenticate("kim", "second-password-2").name == "kim"


def test_mistakes_are_one_line_with_the_fix(qc_home):
    short = qc("add", "kim", password="short")
    assert short.returncode == 2 and short.stderr.startswith("error:") and "at least" in short.stderr
    assert qc("add", "kim", password="long-enough-1").returncode == 0
    twice = qc("add", "kim", password="long-enough-1")
    assert twice.returncode == 2 and "qc users passwd kim" in twice.stderr
    station = qc("add", "cam1", "--role", "station", password="long-enough-1")
    assert station.returncode == 2 and "qc keys create" in station.stderr
    missing = qc("disable", "nobody")
    assert missing.returncode == 2 and "qc users list" in missing.stderr
    assert "Traceback" not in short.stderr + twice.stderr + station.stderr + missing.stderr
