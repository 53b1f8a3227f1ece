"""Schemathesis over the API's own OpenAPI document, against a real uvicorn and PostgreSQL.

Every operation gets requests that fit its schema and requests that do not (wrong types,
out-of-range numbers, strings that break the patterns, hostile bodies), sent with an
admin token and with a county supervisor's token. Every answer must be:

* never a 5xx;
* a status the document declares (each operation declares its success codes and ``4XX``
  with the error shape ``{"error", "message"}``), with a body that matches its schema
  and the declared content type;
* for a request that does not fit the schema, a 4xx.

The server-sent-events stream never ends: its status and content type are checked, its
body is not read.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis import APIOperation, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.auth import FailedAuthLimiter
from tests.conftest import bearer
from tests.security.conftest import OTHER_COUNTY_MARKERS, LiveApi, Seeded

pytestmark = pytest.mark.slow

Operation = APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]
STREAM = ("GET", "/api/v1/alert-events/stream")
#: Examples per operation and generation mode; about 37 operations x 2 modes.
EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


#: The one kind of schema-violating value the API accepts: a number where a time is expected.
#: Pydantic reads it as Unix seconds (UTC), an unambiguous instant, so it is not refused.
NUMERIC_TIME = re.compile(r"parameter `(since|until|start|end)` in query - violates `type` .*became (number|integer)\)")


def rejects_invalid_data(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Schemathesis's negative_data_rejection, less the accepted numeric times."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData as exc:
        if NUMERIC_TIME.search(exc.message):
            return None
        raise


@dataclass
class Tally:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    no_invalid_request: int = 0

    def count(self, status: int) -> None:
        self.requests += 1
        self.by_status[status] += 1


def fuzz(api: LiveApi, token: str, tally: Tally, *, known: dict[str, object], unseen: tuple[str, ...] = ()) -> None:
    """Every operation, both generation modes, with generated path parameters (mostly 404)
    and again with ``known`` ones, so that queries and bodies reach the database;
    ``unseen``: text no successful answer may contain."""
    # The fuzzer logs in with made-up tokens; the failed-authentication limit is tested elsewhere.
    api.app.state.auth_limiter = FailedAuthLimiter(max_failures=10**9)
    schema = schemathesis.openapi.from_dict(api.app.openapi())
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        fixed = [None, {k: v for k, v in known.items() if k in names}] if names else [None]
        for mode, path_parameters in itertools.product((GenerationMode.POSITIVE, GenerationMode.NEGATIVE), fixed):
            try:
                fuzz_operation(api, bearer(token), operation, mode, tally, unseen, path_parameters)
            except hypothesis.errors.Unsatisfiable:
                # Nothing left to get wrong: no query, header or body, and no path parameter
                # that is generated rather than fixed. There is no invalid request to make.
                free = [*operation.query, *operation.headers, *operation.body]
                if path_parameters is None:
                    free += list(operation.path_parameters)
                assert mode is GenerationMode.NEGATIVE
                assert not free, (operation.label, free)
                tally.no_invalid_request += 1
            except (Exception, BaseExceptionGroup) as exc:  # collected: the report names every failing operation
                label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
                tally.failures.append(f"{label}: {type(exc).__name__}: {exc}"[:3000])


def fuzz_operation(
    api: LiveApi,
    headers: dict[str, str],
    operation: Operation,
    mode: GenerationMode,
    tally: Tally,
    unseen: tuple[str, ...],
    path_parameters: dict[str, object] | None,
) -> None:
    checks = CHECKS + ([rejects_invalid_data] if mode is GenerationMode.NEGATIVE else [])
    endless = (operation.method.upper(), operation.path) == STREAM

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        # The first failing example is reported as found: shrinking one took minutes per operation.
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case: Case) -> None:
        if endless:
            # requests with stream=True: the status and headers, never the endless body.
            kwargs = case.as_transport_kwargs(base_url=api.base_url, headers=headers)
            with requests.request(**kwargs, stream=True, timeout=10) as streamed:
                tally.count(streamed.status_code)
                assert streamed.status_code < 500, streamed.status_code
                if streamed.status_code == 200:
                    assert streamed.headers["content-type"].startswith("text/event-stream")
                else:
                    error = json.loads(streamed.raw.read(65536))
                    assert {"error", "message"} <= set(error), error
            return
        response = case.call(base_url=api.base_url, headers=headers, timeout=30)
        tally.count(response.status_code)
        case.validate_response(response, checks=checks)
        if response.status_code == 200:
            leaked = [marker for marker in unseen if marker in response.text]
            assert not leaked, (leaked, response.text[:500])

    run()


def report(name: str, tally: Tally) -> str:
    return (
        f"{name}: {tally.requests} requests, statuses {dict(sorted(tally.by_status.items()))}, "
        f"{tally.no_invalid_request} runs with no invalid request to make"
    )


def known(seeded: Seeded) -> dict[str, object]:
    return {"mine": "M1", "sensor": "GN01", "alert_id": seeded.own_alert}


def test_fuzz_with_an_admin_token(api: LiveApi, seeded: Seeded) -> None:
    tally = Tally()
    fuzz(api, seeded.admin, tally, known=known(seeded))
    print(report("admin", tally))
    assert not tally.failures, "\n\n".join(tally.failures)
    assert tally.requests >= 2000


def test_fuzz_with_a_county_token(api: LiveApi, seeded: Seeded) -> None:
    """The same with a county supervisor's token; no successful answer mentions the other county."""
    tally = Tally()
    fuzz(api, seeded.county, tally, known=known(seeded), unseen=OTHER_COUNTY_MARKERS)
    print(report("county", tally))
    assert not tally.failures, "\n\n".join(tally.failures)
    assert tally.requests >= 2000
