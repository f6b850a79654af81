"""Product changeover through the service, as a specification: an engineer saves versioned
product profiles, the station (or an engineer) says which product is on the line, and each
frame is judged with that product's profile (or the one its X-Product header names) and
records the product and profile version. A product without a profile, or a profile naming a
model this service does not judge with, is refused with the fix rather than judged wrongly.

The untrained test model scores every anchor around 1e-5 (tests/service_harness.py): under
FAIL_ALL every frame fails, under the default rules every frame passes."""

from __future__ import annotations

import pytest

from inspection.products import ProductProfile
from tests.service_harness import FAIL_ALL, frame


@pytest.fixture
def station(service) -> str:
    """A station whose own rules pass every frame, with a product "strict" that fails every
    frame and a product "lenient" with the station's own rules."""
    station = service.add_station()
    for product, body in (("strict", {"rules": FAIL_ALL}), ("lenient", {})):
        saved = service.client.put(f"/v1/stations/{station}/products/{product}", json=body, headers=service.admin)
        assert saved.status_code == 200, saved.text
    return station


def select(service, station: str, product: str | None, key: dict | None = None):
    return service.client.put(f"/v1/stations/{station}/product", json={"product": product},
                              headers=key or service.admin)


def test_frames_are_judged_with_the_selected_products_profile_and_record_it(service, station):
    station_key = service.key("station", (station,))
    assert select(service, station, "strict", station_key).json()["product"] == "strict"
    judged = service.inspect(station, frame(seed=1), key=station_key).json()
    assert (judged["verdict"], judged["product"], judged["product_version"]) == ("FAIL", "strict", 1)
    assert judged["rules_version"] == 1  # the station's rules version, unchanged

    select(service, station, "lenient", station_key)
    judged = service.inspect(station, frame(seed=2), key=station_key).json()
    assert (judged["verdict"], judged["product"], judged["product_version"]) == ("PASS", "lenient", 1)

    select(service, station, None, station_key)
    judged = service.inspect(station, frame(seed=3), key=station_key).json()
    assert (judged["verdict"], judged["product"], judged["product_version"]) == ("PASS", None, None)
    listed = service.client.get("/v1/inspections", params={"station": station, "product": "strict"},
                                headers=service.admin).json()["items"]
    assert [(r["verdict"], r["product"]) for r in listed] == [("FAIL", "strict")]


def test_a_new_profile_version_judges_the_next_frames_and_the_records_keep_theirs(service, station):
    select(service, station, "lenient")
    first = service.inspect(station, frame(seed=10)).json()
    changed = service.client.put(f"/v1/stations/{station}/products/lenient", json={"rules": FAIL_ALL},
                                 headers=service.admin)
    assert changed.status_code == 200 and changed.json()["version"] == 2
    second = service.inspect(station, frame(seed=11)).json()
    assert [(r["verdict"], r["product_version"]) for r in (first, second)] == [("PASS", 1), ("FAIL", 2)]
    history = service.client.get(f"/v1/stations/{station}/products/lenient", headers=service.admin).json()
    assert [(h["version"], h["profile"]["rules"] is None) for h in history] == [(1, True), (2, False)]
    again = service.client.get(f"/v1/inspections/{first['id']}", headers=service.admin).json()
    assert (again["verdict"], again["product_version"]) == ("PASS", 1)


def test_the_x_product_header_overrides_the_stations_selection(service, station):
    select(service, station, "lenient")
    judged = service.inspect(station, frame(seed=20), headers={"X-Product": "strict"}).json()
    assert (judged["verdict"], judged["product"]) == ("FAIL", "strict")
    assert service.client.get(f"/v1/stations/{station}", headers=service.admin).json()["product"] == "lenient"


def test_a_retried_frame_keeps_the_product_it_was_first_judged_with(service, station):
    select(service, station, "strict")
    first = service.inspect(station, frame(seed=30), headers={"Idempotency-Key": "part-30"}).json()
    select(service, station, "lenient")
    retried = service.inspect(station, frame(seed=30), headers={"Idempotency-Key": "part-30"})
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert (retried.json()["id"], retried.json()["product"], retried.json()["verdict"]) == (
        first["id"], "strict", "FAIL")


def test_an_unknown_product_is_404_naming_how_to_create_it_and_nothing_is_stored(service, station):
    refused = service.inspect(station, frame(seed=40), headers={"X-Product": "m12-bolt"})
    assert refused.status_code == 404
    assert f"PUT /v1/stations/{station}/products/m12-bolt" in refused.json()["detail"]
    selected = select(service, station, "m12-bolt")
    assert selected.status_code == 404 and "has no profile" in selected.json()["detail"]
    assert service.records(station) == []
    assert service.client.get(f"/v1/stations/{station}/products/m12-bolt", headers=service.admin).status_code == 404


@pytest.mark.parametrize("header", ["has space", "-dash", "x" * 65])
def test_a_product_header_that_is_no_product_name_is_422_naming_the_form(service, station, header):
    refused = service.inspect(station, frame(seed=41), headers={"X-Product": header})
    assert refused.status_code == 422
    assert "letters, digits" in str(refused.json()["detail"]) or "64" in str(refused.json()["detail"])


def test_a_profile_naming_a_model_the_service_does_not_judge_with_is_refused_naming_the_setting(service, station):
    served = service.client.put(f"/v1/stations/{station}/products/bolt", json={"model": "default"},
                                headers=service.admin)
    assert served.status_code == 200 and served.json()["profile"]["model"] == "default"
    other = service.client.put(f"/v1/stations/{station}/products/bolt", json={"model": "bolts-v2"},
                               headers=service.admin)
    assert other.status_code == 422
    assert "QC_MODEL_NAME" in other.json()["detail"] and "bolts-v2" in other.json()["detail"]


def test_a_stored_profile_naming_another_model_is_409_not_judged_with_the_wrong_one(service, station):
    # As if the profile had been saved while this service ran with QC_MODEL_NAME=bolts-v2.
    service.state.products.set_profile(station, "bolt", ProductProfile(model="bolts-v2"))
    refused = service.inspect(station, frame(seed=50), headers={"X-Product": "bolt"})
    assert refused.status_code == 409
    assert "bolts-v2" in refused.json()["detail"] and "QC_MODEL_NAME" in refused.json()["detail"]
    assert service.records(station) == []


def test_product_rules_naming_a_class_the_model_does_not_detect_are_refused(service, station):
    misspelt = {"rules": {"classes": {"scratches": {"fail_conf": 0.3}}}}
    refused = service.client.put(f"/v1/stations/{station}/products/bolt", json=misspelt, headers=service.admin)
    assert refused.status_code == 422 and "scratches" in refused.json()["detail"]
    assert service.client.get(f"/v1/stations/{station}/products/bolt", headers=service.admin).status_code == 404


def test_a_disabled_products_frames_are_refused_409(service, station):
    service.client.put(f"/v1/stations/{station}/products/paused", json={"rules": {"enabled": False}},
                       headers=service.admin)
    refused = service.inspect(station, frame(seed=60), headers={"X-Product": "paused"})
    assert refused.status_code == 409 and "product paused is disabled" in refused.json()["detail"]


def test_who_may_save_profiles_and_change_products(service, station):
    own = service.key("station", (station,))
    other_station = service.key("station", (service.add_station(),))
    reviewer, engineer = service.key("reviewer"), service.key("engineer")
    assert select(service, station, "strict", own).status_code == 200
    assert select(service, station, "strict", engineer).status_code == 200
    assert select(service, station, "strict", other_station).status_code == 403
    assert select(service, station, "strict", reviewer).status_code == 403
    profile = f"/v1/stations/{station}/products/strict"
    assert service.client.put(profile, json={}, headers=own).status_code == 403
    assert service.client.put(profile, json={}, headers=engineer).status_code == 200
    listed = service.client.get(f"/v1/stations/{station}/products", headers=own).json()
    assert listed["selected"] == "strict"
    assert [(p["product"], p["version"]) for p in listed["products"]] == [("lenient", 1), ("strict", 2)]
    assert service.client.get(f"/v1/stations/{station}/products", headers=other_station).status_code == 403


def test_a_profile_with_an_unknown_field_is_422_naming_it(service, station):
    refused = service.client.put(f"/v1/stations/{station}/products/bolt", json={"modle": "default"},
                                 headers=service.admin)
    assert refused.status_code == 422 and "modle" in str(refused.json()["detail"])


def test_a_products_rules_decide_what_a_damaged_frame_gets(service, station):
    from tests.test_hardening_images import DAMAGED

    service.client.put(f"/v1/stations/{station}/products/tolerant", json={"rules": {"damaged_image": "review"}},
                       headers=service.admin)
    damaged = DAMAGED["cut in half, FFD9 appended"]()
    refused = service.inspect(station, damaged, headers={"X-Product": "lenient"})  # the station's rules: refuse
    assert refused.status_code == 400
    kept = service.inspect(station, damaged, headers={"X-Product": "tolerant"}).json()
    assert (kept["verdict"], kept["product"], kept["product_version"]) == ("REVIEW", "tolerant", 1)
    assert kept["rule"].startswith("damaged image: ")
