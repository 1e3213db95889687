"""Schemathesis against the live server's /openapi.json: no generated request may get a 5xx.

Every operation gets a few valid and a few invalid requests (a few hundred in all); a 5xx
answer fails the test with the request that caused it. Waits are left out (a wait on an
open commit that the fuzzer made could take its full 30 s; tests/api/test_api.py has them).
"""

from __future__ import annotations

import time

import pytest
from apihelpers import Live

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

# Tar bodies are binary: sent as generated, like application/octet-stream.
schemathesis.serializer.alias("application/x-tar", "application/octet-stream")

EXAMPLES = 5  # per operation and mode: ~50 operations x 2 modes x 5
# Seconds per operation for the whole run: a guard against a hang, not a speed test (alone
# on a 2-core machine the run takes about 0.9 s per operation, most of it generating cases).
BUDGET_PER_OPERATION = 2.0


@pytest.fixture(autouse=True)
def quick_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSK_SYNC", "none")  # set before the live server opens its home


def test_no_generated_request_gets_a_server_error(live: Live) -> None:
    import requests

    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    session = requests.Session()  # one keep-alive connection for every request
    failures: list[str] = []
    count = 0
    started = time.monotonic()
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 50
    budget = BUDGET_PER_OPERATION * len(operations)
    for operation in operations:
        if operation.path.endswith("/wait"):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                nonlocal count
                count += 1
                response = case.call(base_url=live.url, session=session, timeout=30)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} {case.query or ''} -> "
                        f"{response.status_code} {response.text[:300]}"
                    )

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong in this one
        assert time.monotonic() - started < budget, f"over {budget:.0f}s after {count} requests"
    session.close()
    assert not failures, "\n".join(failures[:10])
    assert count >= 200
