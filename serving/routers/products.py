"""Products at a station: versioned profiles (engineers) and the changeover (the station or an
engineer).

Example::

    curl -X PUT -H "Authorization: Bearer $ENGINEER_KEY" -H "Content-Type: application/json" \\
         http://qc:8000/v1/stations/press-3/products/m8-bolt -d '{"rules": {"default": {"fail_conf": 0.4}}}'
    curl -X PUT -H "Authorization: Bearer $STATION_KEY" -H "Content-Type: application/json" \\
         http://qc:8000/v1/stations/press-3/product -d '{"product": "m8-bolt"}'

One service judges with one model (QC_MODEL_NAME; serving/model_manager.py follows that
model's production pointer). A profile that names another model is refused here, and a frame
whose profile names another model (one saved before QC_MODEL_NAME changed) is refused by the
inspect route: judging it with the wrong model would be worse than not judging it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from inspection.products import ProductProfile, check_product_id
from serving.deps import (
    Engineer,
    ManagerDep,
    ProductsDep,
    Reader,
    ReferencesDep,
    SettingsDep,
    StationKey,
    StoreDep,
    check_station,
)
from serving.schemas import ProductOut, ProductSelection, ProductsOut, StationOut

router = APIRouter(prefix="/v1/stations", tags=["products"])


@router.get("/{station}/products", response_model=ProductsOut)
def list_products(station: str, store: StoreDep, products: ProductsDep, key: Reader) -> ProductsOut:
    """The station's products (the newest profile version of each) and the one on the line now."""
    check_station(key, station)
    found = store.station(station)  # 404 naming the fix
    return ProductsOut(selected=found.product, products=[ProductOut.of(p) for p in products.products(station)])


@router.put("/{station}/products/{product}", response_model=ProductOut)
def set_profile(station: str, product: str, profile: ProductProfile, products: ProductsDep,
                references: ReferencesDep, manager: ManagerDep, settings: SettingsDep, key: Engineer) -> ProductOut:
    """A new version of the product's profile (version 1 for a new product); frames keep the
    version that judged them."""
    check_product_id(product)  # 422 naming the form
    served = settings.model_name
    if profile.model is not None and profile.model != served:
        raise HTTPException(422, f"the profile names model {profile.model}, but this service judges with "
                                 f"{served} only (QC_MODEL_NAME): leave model out or name {served}, or run "
                                 f"a service of its own for {profile.model} (QC_MODEL_NAME={profile.model})")
    if profile.rules is not None:
        manager.check_classes(profile.rules)  # a class the served model does not detect: 422
    if profile.reference is not None:
        versions = [r.version for r in references.history(station)]
        if profile.reference not in versions:
            raise HTTPException(422, f"station {station} has no reference version {profile.reference} "
                                     f"(versions: {', '.join(map(str, versions)) or 'none'}); register the "
                                     f"product's golden part with PUT /v1/stations/{station}/reference first")
    return ProductOut.of(products.set_profile(station, product, profile, created_by=key.id))


@router.get("/{station}/products/{product}", response_model=list[ProductOut])
def profile_history(station: str, product: str, products: ProductsDep, key: Reader) -> list[ProductOut]:
    """Every version of the product's profile at the station, oldest first."""
    check_station(key, station)
    return [ProductOut.of(p) for p in products.history(station, product)]


@router.put("/{station}/product", response_model=StationOut)
def select_product(station: str, body: ProductSelection, store: StoreDep, products: ProductsDep,
                   key: StationKey) -> StationOut:
    """The changeover: frames posted without X-Product are judged with this product's profile
    from now on (null: with the station's own rules). 404 for a product without a profile."""
    check_station(key, station)
    products.select(station, body.product)
    return StationOut.of(store.station(station))
