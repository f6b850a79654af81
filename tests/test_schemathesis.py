"""Property-based tests of the whole OpenAPI schema with Schemathesis: whatever a client sends,
with a valid admin key, the service answers without a server error (5xx), and its answers
match the schema it publishes.

A few of Schemathesis' checks are relaxed where our answers are intentional:
- 503 with Retry-After is how the service says "busy, retry" (queue full, no model yet), and
  504 a frame past its deadline: both are documented, neither is a bug;
- `positive_data_acceptance` expects every schema-valid request to succeed, but a valid-looking
  frame can still be a corrupt image, a station can be unknown, a model version missing.

Every route is exercised, the review routes with a person's session cookie and CSRF token as
the review page sends them, over a service where a station has sent a heartbeat; and
sequences of requests follow the links Schemathesis infers between operations (stateful), so
what one request stores is read by the next. DELETE /v1/keys/{key_id} is exercised too; a case that would revoke the
key the run itself authenticates with revokes a spare admin key instead (the run would
otherwise saw off its own branch and answer 401 from then on, hiding every later check).
Every status the service answers is declared (serving/schemas.py `problems`), and refusals'
bodies match the declared `Problem` / `OIPProblem` schema.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as st_checks

from inspection.models.registry import Registry
from inspection.rules import StationRules
from inspection.store.database import Database
from inspection.store.keys import KeyStore
from inspection.store.records import RecordStore
from inspection.store.stations_health import Heartbeat, StationHealthStore
from inspection.store.users import UserStore
from serving.app import create_app
from serving.settings import ServeSettings

MAX_EXAMPLES = int(os.environ.get("QC_SCHEMATHESIS_EXAMPLES", "25"))
HOLDOUT = "holdout@v1"
EVALUATED = {"evaluations": {HOLDOUT: {"map50_95": 0.5, "per_class": {}}}}


@pytest.fixture(scope="module")
def service(untrained_model, tmp_path_factory):
    """The app, over a home with a model in production, two stations and an admin key; and
    the admin's headers. Schemathesis starts the app's lifespan on its first request."""
    home = tmp_path_factory.mktemp("schemathesis")
    service_settings = ServeSettings(home=home, providers="cpu", log_json=False, model_poll_s=3600.0,
                                     database_url="", pass_sample_rate=1.0)
    service_settings.ensure_dirs()
    registry = Registry(service_settings.models_dir)
    registry.add("default", untrained_model, card=EVALUATED)
    registry.set_production("default", "v1")
    registry.set_holdout("default", HOLDOUT)
    db = Database.from_settings(service_settings)
    keys = KeyStore(db)
    token = keys.create(role="admin", name="schemathesis")
    spare = keys.create(role="admin", name="spare, for DELETE /v1/keys")
    store = RecordStore(db)
    store.add_station("line1", rules=StationRules())
    store.add_station("line2", rules=StationRules.parse({"default": {"fail_conf": 1e-6, "review_conf": 1e-6}}))
    # A station whose agent has reported, long ago, inside its shift: GET /v1/stations and its
    # health render it silent (a heartbeat's values broke that listing for everyone, issue 25).
    StationHealthStore(db).record("line1", Heartbeat("0.1.0", 30, "00:00-23:59", {"spool_depth": 3}),
                                  at=datetime(2026, 1, 1))
    users = UserStore(db)
    person = users.add("schemathesis", password="schemathesis-pass-1", role="reviewer")
    cookie, session = users.open_session(person, idle=timedelta(hours=8), lifetime=timedelta(hours=8))
    db.dispose()
    app = create_app(service_settings)
    SESSION.update({"Cookie": f"qc_session={cookie}", "X-CSRF-Token": session.csrf})
    yield app, {"Authorization": f"Bearer {token}"}, key_id(token), key_id(spare)
    from schemathesis.python import asgi

    if hasattr(asgi, "shutdown_lifespans"):
        asgi.shutdown_lifespans()  # the app's shutdown: batcher drained, database closed


# The schema is read from an app that is never started (building the OpenAPI document needs no
# database or model), so that the operations are known when pytest collects; the requests go
# to the started app of the `service` fixture. (Schemathesis' lazy `from_fixture` loader does
# not work with pytest 9: it sets `node._nodeid`, which pytest 9 no longer has.)
OPENAPI = create_app(ServeSettings(home=Path(tempfile.gettempdir()) / "qc-openapi-only")).openapi()
schemathesis.serializer.alias("image/bmp", "application/octet-stream")  # frames are bytes
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(max_examples=MAX_EXAMPLES)

def key_id(token: str) -> str:
    return token.split("_")[1]  # qc_<id>_<secret>


SESSION: dict[str, str] = {}  # a reviewer's sign-in cookie and CSRF token (the `service` fixture)


def credentials(case, key_headers: dict[str, str]) -> dict[str, str]:
    """The review routes as the review page calls them (a person's session cookie and its
    CSRF token); every other route with the admin key."""
    return SESSION if "/reviews" in case.path else key_headers


# Intentional answers (see the module docstring); everything else must be < 500.
INTENTIONAL = {503, 504}
RELAXED_CHECKS = [
    # Pydantic's lax mode takes false for 0 and "1" for 1 in a body; we accept that leniency
    # (time filters are strict: tests/test_hardening_service.py).
    "negative_data_rejection",
    "positive_data_acceptance",
    # Starlette answers 405 with the methods of the first route that matches the path only.
    "unsupported_method",
    "allow_header_conformance",
    # Its probe without the key is sent through `requests` to a base URL, not to the ASGI app
    # (schemathesis 4.32 with from_dict and case.call(app=...)); tests/test_service.py
    # checks every route refuses a missing key instead.
    "ignored_auth",
]
RELAXED = [getattr(st_checks, name) for name in RELAXED_CHECKS if hasattr(st_checks, name)]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_no_request_gives_a_server_error_and_answers_match_the_schema(case, service):
    app, headers, own_key, spare_key = service
    if case.method == "DELETE" and (case.path_parameters or {}).get("key_id") == own_key:
        case.path_parameters["key_id"] = spare_key  # never revoke the key this run uses
    headers = credentials(case, headers)
    response = case.call(app=app, headers=headers)
    assert response.status_code < 500 or response.status_code in INTENTIONAL, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
    transport = {"app": app, "headers": headers}
    case.validate_response(response, headers=headers, excluded_checks=RELAXED, transport_kwargs=transport)


@pytest.mark.slow  # minutes on 2 busy cores; `make test` (CI) runs it
def test_sequences_of_requests_following_the_schemas_links_give_no_server_error(service):
    """Stateful: Schemathesis chains operations by the links it infers from the schema (a
    station created, then its rules, heartbeat, health and reference read; an inspection's
    id into its reviews and trail), so values one request stores reach the next one's
    readers, as a heartbeat's shift reached every caller of GET /v1/stations (issue 25)."""
    app, key_headers, own_key, spare_key = service

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case) -> None:
            if case.method == "DELETE" and (case.path_parameters or {}).get("key_id") == own_key:
                case.path_parameters["key_id"] = spare_key

        def get_call_kwargs(self, case) -> dict:
            return {"app": app, "headers": credentials(case, key_headers)}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            assert response.status_code < 500 or response.status_code in INTENTIONAL, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}")
            case.validate_response(response, headers=kwargs.get("headers"), excluded_checks=RELAXED,
                                   transport_kwargs=kwargs)

    Workflow.run(settings=settings(max_examples=max(5, MAX_EXAMPLES // 2), stateful_step_count=6, deadline=None,
                                   suppress_health_check=list(HealthCheck)))


def test_the_run_never_revokes_its_own_key(service):
    """After every case above (pytest runs this file in order), the run's own key still works."""
    app, headers, _, _ = service
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        assert client.get("/v1/keys", headers=headers).status_code == 200
