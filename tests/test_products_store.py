"""Product profiles in the store, as a specification: each save is a new version and every
earlier one is kept, the selection names only products with a profile, and a record keeps the
product and version that judged it. On SQLite and (with QC_TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from inspection.errors import ConfigError, NotFound
from inspection.products import ProductProfile
from inspection.rules import StationRules, Verdict
from inspection.store.products import ProductStore
from inspection.store.records import InspectionFilter, InspectionRecord, RecordStore

STRICT = StationRules.parse({"default": {"fail_conf": 0.3, "review_conf": 0.1}})


@pytest.fixture
def line(db) -> tuple[RecordStore, ProductStore]:
    records = RecordStore(db)
    records.add_station("press-3", rules=StationRules())
    return records, ProductStore(db)


def test_each_saved_profile_is_a_new_version_and_the_newest_is_in_force(line):
    _, products = line
    first = products.set_profile("press-3", "m8-bolt", ProductProfile(model="default"), created_by="lee")
    second = products.set_profile("press-3", "m8-bolt", ProductProfile(rules=STRICT), created_by="kim")
    assert (first.version, second.version) == (1, 2)
    assert products.profile("press-3", "m8-bolt").profile.rules == STRICT
    assert products.profile("press-3", "m8-bolt", version=1).profile.model == "default"
    assert [(p.version, p.created_by) for p in products.history("press-3", "m8-bolt")] == [(1, "lee"), (2, "kim")]


def test_versions_count_per_product(line):
    _, products = line
    products.set_profile("press-3", "m8-bolt", ProductProfile())
    products.set_profile("press-3", "m8-bolt", ProductProfile())
    assert products.set_profile("press-3", "m10-bolt", ProductProfile()).version == 1
    assert [(p.name, p.version) for p in products.products("press-3")] == [("m10-bolt", 1), ("m8-bolt", 2)]


def test_a_profile_without_rules_judges_with_the_stations_rules():
    assert ProductProfile().rules_or(STRICT) == STRICT
    own = StationRules.parse({"default": {"fail_conf": 0.9}})
    assert ProductProfile(rules=own).rules_or(STRICT) == own


def test_an_unknown_product_is_not_found_and_the_message_says_how_to_create_it(line):
    _, products = line
    fixes = r"PUT /v1/stations/press-3/products/m8-bolt .*qc stations profile press-3 m8-bolt"
    with pytest.raises(NotFound, match=fixes):
        products.profile("press-3", "m8-bolt")
    with pytest.raises(NotFound, match="has no profile"):
        products.select("press-3", "m8-bolt")
    products.set_profile("press-3", "m8-bolt", ProductProfile())
    with pytest.raises(NotFound, match="no version 7"):
        products.profile("press-3", "m8-bolt", version=7)


def test_a_profile_for_an_unknown_station_is_not_found(line):
    _, products = line
    with pytest.raises(NotFound, match="qc stations add nowhere"):
        products.set_profile("nowhere", "m8-bolt", ProductProfile())
    with pytest.raises(NotFound, match="qc stations add nowhere"):
        products.select("nowhere", None)


@pytest.mark.parametrize("name", ["", "-dash", "has space", "x" * 65, "../up", "a/b"])
def test_a_product_name_that_cannot_be_a_url_segment_or_header_is_refused(line, name):
    _, products = line
    with pytest.raises(ConfigError, match="letters, digits"):
        products.set_profile("press-3", name, ProductProfile())


def test_a_misspelt_profile_field_is_refused_naming_it():
    with pytest.raises(ConfigError, match="modle"):
        ProductProfile.parse("modle: default\n", source="bolt.yaml")
    with pytest.raises(ConfigError, match=r"bolt\.yaml: invalid product profile: rules\.default\.fail_conf"):
        ProductProfile.parse({"rules": {"default": {"fail_conf": 2}}}, source="bolt.yaml")


def test_the_selection_is_the_stations_product_until_changed_or_cleared(line):
    records, products = line
    assert records.station("press-3").product is None
    products.set_profile("press-3", "m8-bolt", ProductProfile())
    products.set_profile("press-3", "m10-bolt", ProductProfile())
    products.select("press-3", "m8-bolt")
    assert records.station("press-3").product == "m8-bolt"
    products.select("press-3", "m10-bolt")
    assert [s.product for s in records.stations()] == ["m10-bolt"]
    with pytest.raises(NotFound):
        products.select("press-3", "m12-bolt")
    assert records.station("press-3").product == "m10-bolt"  # a refused changeover changes nothing
    products.select("press-3", None)
    assert records.station("press-3").product is None


def test_concurrent_saves_of_one_product_each_get_their_own_version(line):
    _, products = line
    errors: list[Exception] = []

    def save(i: int) -> None:
        try:
            products.set_profile("press-3", "m8-bolt", ProductProfile(description=str(i)))
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.version for p in products.history("press-3", "m8-bolt")] == list(range(1, 7))


def test_records_keep_the_product_and_version_that_judged_them_and_filter_by_it(line):
    records, _ = line

    def judged(product: str | None, version: int | None) -> InspectionRecord:
        saved, _ = records.save_inspection(InspectionRecord(
            station_id="press-3", verdict=Verdict.PASS, rule="t", model_name="default", model_version="v1",
            rules_version=1, width=64, height=64, detections=[], timings={}, product=product,
            product_version=version))
        return saved

    bolt, plain = judged("m8-bolt", 3), judged(None, None)
    again = records.inspection(bolt.id)
    assert (again.product, again.product_version) == ("m8-bolt", 3)
    assert (records.inspection(plain.id).product, records.inspection(plain.id).product_version) == (None, None)
    found, _ = records.list_inspections(InspectionFilter(station="press-3", product="m8-bolt"))
    assert [r.id for r in found] == [bolt.id]
