"""Product profiles per station, versioned like rules, and the product on the line now.

Example::

    products = ProductStore(db)
    products.set_profile("line1-cam2", "m8-bolt", ProductProfile(rules=rules), created_by="lee")  # v1, v2, ...
    products.select("line1-cam2", "m8-bolt")         # the changeover: frames without a product use it
    judging = products.profile("line1-cam2", "m8-bolt")   # the newest version, or NotFound naming the fix
    products.history("line1-cam2", "m8-bolt")        # every version, oldest first

Why versions: an inspection records the product and the profile version that judged it, so a
record read a year later still says which thresholds (and which model) made its verdict; a
profile is never changed in place. The selection (`stations.product`) is a plain value: which
product is on the line is a fact about now, while what each frame was judged with is on the
frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from inspection.errors import Conflict, NotFound
from inspection.products import ProductProfile, check_product_id
from inspection.store.database import Database
from inspection.store.records import utcnow
from inspection.store.schema import station_products, stations


@dataclass(frozen=True)
class Product:
    """One version of one product's profile at one station."""

    station_id: str
    name: str
    version: int
    profile: ProductProfile
    created_at: datetime
    created_by: str | None

    def to_json(self) -> dict[str, Any]:
        return {"station": self.station_id, "product": self.name, "version": self.version,
                "profile": self.profile.model_dump(mode="json"),
                "created_at": self.created_at.isoformat() + "Z", "created_by": self.created_by}


def _how_to_create(station: str, product: str) -> str:
    return (f"create its profile with PUT /v1/stations/{station}/products/{product} (an engineer) "
            f"or qc stations profile {station} {product} profile.yaml")


class ProductStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set_profile(self, station: str, product: str, profile: ProductProfile, *,
                    created_by: str | None = None) -> Product:
        """A new version of the product's profile at the station (1 for a new product);
        earlier versions stay, for the records they judged."""
        check_product_id(product)
        # As RecordStore.set_rules: a write to the station's row comes first. It takes SQLite's
        # write lock and PostgreSQL's row lock, so two engineers saving the same product at
        # once queue up, and each reads the version the other wrote.
        with self.db.engine.begin() as conn:
            touched = conn.execute(stations.update().where(stations.c.id == station)
                                   .values(description=stations.c.description))
            if not touched.rowcount:
                raise NotFound(f"station {station} does not exist; add it with qc stations add {station}")
            newest = conn.execute(select(func.max(station_products.c.version)).where(
                station_products.c.station_id == station, station_products.c.product == product)).scalar()
            try:
                conn.execute(station_products.insert().values(
                    station_id=station, product=product, version=(newest or 0) + 1,
                    body=profile.model_dump(mode="json"), created_at=utcnow(),
                    created_by=created_by))
            except IntegrityError as error:  # the unique version: only without the lock above
                raise Conflict(f"product {product} at station {station} was changed at the same "
                               "moment; send the profile again") from error
        return self.profile(station, product)

    def profile(self, station: str, product: str, version: int | None = None) -> Product:
        """The newest version of the product's profile (or `version`); `NotFound` naming how
        to create it."""
        query = select(station_products).where(station_products.c.station_id == station,
                                               station_products.c.product == product)
        if version is not None:
            query = query.where(station_products.c.version == version)
        with self.db.engine.connect() as conn:
            row = conn.execute(query.order_by(station_products.c.version.desc()).limit(1)).mappings().first()
        if row is None:
            if version is not None and self._known(station, product):
                raise NotFound(f"product {product} at station {station} has no version {version}")
            raise NotFound(f"product {product} has no profile at station {station}; "
                           f"{_how_to_create(station, product)}")
        return _product(row)

    def _known(self, station: str, product: str) -> bool:
        query = select(station_products.c.id).where(station_products.c.station_id == station,
                                                    station_products.c.product == product).limit(1)
        with self.db.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def history(self, station: str, product: str) -> list[Product]:
        """Every version of the product's profile at the station, oldest first."""
        query = (select(station_products).where(station_products.c.station_id == station,
                                                station_products.c.product == product)
                 .order_by(station_products.c.version))
        with self.db.engine.connect() as conn:
            found = [_product(row) for row in conn.execute(query).mappings()]
        if not found:
            raise NotFound(f"product {product} has no profile at station {station}; "
                           f"{_how_to_create(station, product)}")
        return found

    def products(self, station: str) -> list[Product]:
        """The newest version of each of the station's products, by name."""
        newest = (select(func.max(station_products.c.id)).where(station_products.c.station_id == station)
                  .group_by(station_products.c.product))
        query = select(station_products).where(station_products.c.id.in_(newest)).order_by(
            station_products.c.product)
        with self.db.engine.connect() as conn:
            return [_product(row) for row in conn.execute(query).mappings()]

    def select(self, station: str, product: str | None) -> str | None:
        """The changeover: `product` is on the line now (None: no product, the station's own
        rules). A product without a profile at the station is `NotFound`, naming the fix."""
        if product is not None:
            check_product_id(product)
        with self.db.engine.begin() as conn:
            changed = conn.execute(stations.update().where(stations.c.id == station).values(product=product))
            if not changed.rowcount:
                raise NotFound(f"station {station} does not exist; add it with qc stations add {station}")
            if product is not None and conn.execute(select(station_products.c.id).where(
                    station_products.c.station_id == station, station_products.c.product == product)
                    .limit(1)).first() is None:
                # Raised inside the transaction: the selection is rolled back with it.
                raise NotFound(f"product {product} has no profile at station {station}; "
                               f"{_how_to_create(station, product)}")
        return product


def _product(row) -> Product:
    return Product(station_id=row["station_id"], name=row["product"], version=row["version"],
                   profile=ProductProfile.model_validate(row["body"]), created_at=row["created_at"],
                   created_by=row["created_by"])
