"""The API fuzzed from its own OpenAPI schema: whatever arrives, never a 500, always the documented shape."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from toki_dashboard.api import api
from usage.models import TokenScope
from usage.services import create_account, create_api_token

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
# Valid and deliberately invalid inputs: both must get a documented answer, never a 500.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.fixture
def every_scope_token(transactional_db) -> str:
    account = create_account(name="Fuzz", slug="fuzz")
    return create_api_token(account=account, name="fuzzer", scopes=list(TokenScope.values))[1]


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_answer_500_or_off_schema(case, live_server, every_scope_token):
    response = case.call(base_url=live_server.url, headers={"Authorization": f"Bearer {every_scope_token}"})

    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance])
