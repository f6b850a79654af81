"""Backup and restore, as docs/deploy.md tells an operator to do them, tried for real: a
`pg_dump` of the database, a tar of the image store and the model registry; then the loss of
all three; then `pg_restore`, the tar unpacked, and a service started on them serves the same
records, the same image bytes and the same production model."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from urllib.parse import unquote

import pytest
from sqlalchemy import text

from inspection.store.database import Database
from tests.service_harness import FAIL_ALL, POSTGRES_URL, frame, running

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_a_plant_restored_from_its_backups_serves_what_it_served(postgres_url, untrained_model, tmp_path):
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install postgresql-client)")
    schema = unquote(postgres_url).split("search_path=")[1]
    home = tmp_path / "home"
    with running(home, untrained_model, database_url=postgres_url) as service:
        station = service.add_station(FAIL_ALL)
        frames = [frame(seed=seed) for seed in range(3)]
        before = [service.inspect(station, data).json() for data in frames]
        assert all(answer["verdict"] == "FAIL" for answer in before)

    # The backups (docs/deploy.md, "Backups").
    dump = tmp_path / "qc.dump"
    subprocess.run(["pg_dump", f"--dbname={POSTGRES_URL}", f"--schema={schema}", "--format=custom",
                    f"--file={dump}"], check=True)
    files = tmp_path / "qc-files.tar.gz"
    with tarfile.open(files, "w:gz") as archive:
        for name in ("images", "models"):
            archive.add(home / name, arcname=name)

    # The loss.
    admin = Database(POSTGRES_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    shutil.rmtree(home / "images")
    shutil.rmtree(home / "models")

    # The restore.
    subprocess.run(["pg_restore", f"--dbname={POSTGRES_URL}", "--exit-on-error", str(dump)], check=True)
    with tarfile.open(files) as archive:
        archive.extractall(home, filter="data")
    admin.dispose()

    with running(home, None, database_url=postgres_url) as restored:
        assert restored.state.manager.current.version == "v1"  # the registry's production pointer
        for answer, data in zip(before, frames, strict=True):
            again = restored.client.get(f"/v1/inspections/{answer['id']}", headers=restored.admin)
            assert again.status_code == 200 and again.json()["verdict"] == "FAIL"
            image = restored.client.get(f"/v1/inspections/{answer['id']}/image", headers=restored.admin)
            assert image.content == data
        # And it carries on: a new frame is judged and recorded.
        assert restored.inspect(station, frame(seed=99)).status_code == 200
