"""Schema-driven fuzzing: Schemathesis generates requests for every operation of the app's own
/openapi.json and sends them, signed in, to the app served over HTTP (uvicorn on loopback, real
PostgreSQL and the AWS emulator). No response may be a 5xx or disagree with the document
(status code, content type, headers, body schema). Bounded: a few dozen examples per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from runtime.api.openapi import document
from tests.api.conftest import Api, User
from tests.api.support import upload_through_api

MAX_EXAMPLES = 25


@pytest.fixture
def fuzz_target(api: Api, alice: User) -> Api:
    # Something to find: one item of the signed-in user (its id is random to the fuzzer, so
    # most item routes answer 404 — declared, and checked like any other response).
    upload_through_api(api.http, alice.headers())
    return api


# The app's own document (test_api_openapi.py keeps it equal to the committed openapi.json and
# to what /openapi.json serves).
# A refusal the document declares for limits it cannot state (the upload size limit is
# deployment configuration) is an acceptable answer to schema-valid data.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "413", "429"]
            }
        }
    }
)
schema = schemathesis.openapi.from_dict(document(), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_and_every_response_matches_the_schema(
    case: schemathesis.Case, fuzz_target: Api, alice: User
) -> None:
    excluded = []
    if case.query and case.query.get("cursor"):
        # A cursor is an opaque token the API issued; a schema-valid string is (rightly) a 400.
        excluded.append(positive_data_acceptance)
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if header is not None and header.mode.is_negative:
        # The call below replaces the generated Authorization header with a valid token, so a
        # request whose only fault was that header is rightly accepted.
        excluded.append(negative_data_rejection)
    if case.operation.path == "/items/upload":
        # The file part must be a non-empty image of a listed type: more than the multipart
        # schema can say (an empty or mistyped part is a 422/415, still checked against it).
        excluded.append(positive_data_acceptance)
    case.call_and_validate(
        base_url=fuzz_target.url, headers=alice.headers(), timeout=30, excluded_checks=excluded
    )
