"""Stations' reference images (their golden parts), versioned like their rules.

Example::

    from inspection.store.references import StationReferences

    references = StationReferences(db)
    reference = references.set("line1-cam2", image_sha256=sha, image_format="png",
                               image_wh=(2448, 2048), created_by="engineer-key")
    references.current("line1-cam2").version          # 1, then 2, ...
    references.history("line1-cam2")                  # every version, oldest first

The image lies in the image store under its sha256 (it is stored before the row is written,
so a row never names an image that is not there); the station row holds the version in use,
and each inspection the version it was judged against (migration 0006_station_references).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, select

from inspection.detect.imaging import decode
from inspection.detect.reference import grey
from inspection.errors import NotFound
from inspection.store.database import Database
from inspection.store.images import ImageStorage
from inspection.store.records import utcnow
from inspection.store.schema import station_references, stations


@dataclass(frozen=True)
class StationReference:
    station_id: str
    version: int
    image_sha256: str
    image_format: str
    image_wh: tuple[int, int]
    created_at: datetime
    created_by: str | None

    def to_json(self) -> dict:
        return {"station": self.station_id, "version": self.version, "image_sha256": self.image_sha256,
                "image_format": self.image_format, "width": self.image_wh[0], "height": self.image_wh[1],
                "created_at": self.created_at.isoformat() + "Z", "created_by": self.created_by}


def _missing(station_id: str) -> NotFound:
    return NotFound(f"station {station_id} does not exist; add it with qc stations add {station_id}")


class StationReferences:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, station_id: str, *, image_sha256: str, image_format: str, image_wh: tuple[int, int],
            created_by: str | None = None) -> StationReference:
        """A new reference version for the station; it judges the frames that arrive next."""
        with self.db.engine.begin() as conn:
            # The UPDATE first, as for rules: it takes the write lock, so two registrations
            # queue up and each gets its own version.
            bumped = conn.execute(stations.update().where(stations.c.id == station_id)
                                  .values(reference_version=func.coalesce(stations.c.reference_version, 0) + 1))
            if not bumped.rowcount:
                raise _missing(station_id)
            version = int(conn.execute(select(stations.c.reference_version)
                                       .where(stations.c.id == station_id)).scalar_one())
            conn.execute(station_references.insert().values(
                station_id=station_id, version=version, image_sha256=image_sha256, image_format=image_format,
                width=image_wh[0], height=image_wh[1], created_at=utcnow(), created_by=created_by))
        return self.get(station_id, version)

    def get(self, station_id: str, version: int) -> StationReference:
        query = select(station_references).where(station_references.c.station_id == station_id,
                                                 station_references.c.version == version)
        with self.db.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"station {station_id} has no reference version {version}; see "
                           f"GET /v1/stations/{station_id}/references")
        return _reference(row)

    def grey_image(self, station_id: str, version: int, images: ImageStorage) -> np.ndarray:
        """Version `version` of the station's golden part, decoded in grey as a reference model
        composes it (the service keeps these cached, serving/references.py; the sampler's
        embeddings and the loop's re-judging read them here)."""
        reference = self.get(station_id, version)
        return grey(decode(images.read(reference.image_sha256, reference.image_format)))

    def current(self, station_id: str) -> StationReference | None:
        """The reference in use, or None when the station has none."""
        with self.db.engine.connect() as conn:
            row = conn.execute(select(stations.c.reference_version).where(stations.c.id == station_id)).first()
        if row is None:
            raise _missing(station_id)
        return None if row[0] is None else self.get(station_id, row[0])

    def history(self, station_id: str) -> list[StationReference]:
        self.current(station_id)  # NotFound for an unknown station
        query = (select(station_references).where(station_references.c.station_id == station_id)
                 .order_by(station_references.c.version))
        with self.db.engine.connect() as conn:
            return [_reference(row) for row in conn.execute(query).mappings()]


def _reference(row) -> StationReference:
    return StationReference(station_id=row["station_id"], version=row["version"], image_sha256=row["image_sha256"],
                            image_format=row["image_format"], image_wh=(row["width"], row["height"]),
                            created_at=row["created_at"], created_by=row["created_by"])
