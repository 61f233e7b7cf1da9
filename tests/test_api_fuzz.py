"""Schemathesis against the app's own /openapi.json: every operation gets a bounded number of
generated requests, valid and invalid, and must answer each without a 5xx and with a body that
matches the schema it declares for that status.

The app runs in-process on the test's fresh database with its providers and Discogs pointed at
the fake servers on loopback, so routes that call out are exercised without leaving the machine.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from dispatch.app import create_app
from dispatch.demo.providers import FakeProviders, provider_settings
from tests.support import admin_headers, make_settings
from tests.watch.discogs_fake import FakeDiscogs, discogs_settings

# Examples per operation and generation mode: enough to find the usual suspects (huge
# numbers, odd unicode, nulls, missing fields) while the whole run stays near a minute.
EXAMPLES = 10
CHECKS = [not_a_server_error, response_schema_conformance]
EXCLUDED = {
    # Server-sent events: the response is a live stream that only ends when the client goes
    # away, so a fuzzer waiting for the body would wait forever. tests/watch covers it.
    ("GET", "/api/v1/stream/events"): "live stream",
}
# An admin key has no profile of its own (these answer 422 by design), so the caller's own
# routes are fuzzed a second time, each with a new user's personal key.
USER_PREFIX = "/api/v1/me"
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # Shrinking a failure can take minutes; the report's curl line reproduces it as found.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# Budgets high enough that the fuzzer reaches the routes instead of their rate limits.
UNLIMITED = {
    name: 1_000_000
    for name in (
        "request_rate_per_minute",
        "node_claim_rate_per_minute",
        "node_request_rate_per_minute",
        "gateway_ingest_rate_per_minute",
        "watch_rate_per_minute",
        "search_rate_per_minute",
        "discogs_rate_per_minute",
        "auth_endpoints_rate_per_minute",
    )
}


@pytest.fixture(autouse=True)
def hypothesis_home(tmp_path: Path) -> Iterator[None]:
    """Hypothesis' caches (unicode tables, constants) go to the test's directory, not the repo."""
    set_hypothesis_home_dir(tmp_path / "hypothesis")
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeProviders, FakeDiscogs]]:
    with FakeProviders() as providers, FakeDiscogs() as discogs:
        yield providers, discogs


Operation = APIOperation[Any, Any, Any, Any]


def fuzz(operation: Operation, mode: GenerationMode, headers: dict[str, str]) -> str | None:
    """Run one operation's examples in one mode: the failure report, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @FUZZ_SETTINGS
    def run(case: Case[Operation]) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:
            return None  # nothing in this operation can be made invalid (no input at all)
        return "no valid request could be generated: the operation went untested"
    except BaseExceptionGroup as failures:  # schemathesis' FailureGroup: the checks that broke
        return "".join(traceback.format_exception_only(failures))
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def operations(schema: schemathesis.BaseSchema) -> Iterator[Operation]:
    for path in schema:
        yield from schema[path].values()


def user_key(schema: schemathesis.BaseSchema, email: str) -> str:
    """A personal key of a new user created through the API."""
    created = (
        schema["/api/v1/users"]["POST"]
        .Case(body={"email": email, "password": "a long password"})
        .call(headers=admin_headers())
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    key = (
        schema["/api/v1/users/{user_id}/keys"]["POST"]
        .Case(path_parameters={"user_id": user_id}, body={"name": "fuzz"})
        .call(headers=admin_headers())
    )
    assert key.status_code == 201, key.text
    value: str = key.json()["key"]
    return value


def test_every_operation_survives_fuzzing(
    db_settings: dict[str, Any], fakes: tuple[FakeProviders, FakeDiscogs]
) -> None:
    providers, discogs = fakes
    # Discogs answers from its own fake, which speaks OAuth; the other providers share one.
    outbound = provider_settings(providers) | discogs_settings(discogs)
    app = create_app(make_settings(**db_settings, **outbound, **UNLIMITED, sync_schedule=""))
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures: dict[str, str] = {}
        fuzzed = 0
        for operation in operations(schema):
            if (operation.method.upper(), operation.path) in EXCLUDED:
                continue
            callers = [("admin", admin_headers())]
            if operation.path.startswith(USER_PREFIX):
                # A user of its own: the caller's deletes must not lock the next route out.
                email = f"fuzz{fuzzed}@example.com"
                callers.append(("user", {"X-Dispatch-Key": user_key(schema, email)}))
            for caller, headers in callers:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    report = fuzz(operation, mode, headers)
                    if report is not None:
                        failures[f"{operation.label} ({caller}, {mode.value})"] = report
            fuzzed += 1
    finally:
        asgi.shutdown_lifespans()
    assert fuzzed >= 100, "the schema lost its operations"
    assert not failures, "\n\n".join(f"== {label}\n{report}" for label, report in failures.items())
