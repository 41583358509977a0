"""What a test does when a local service it needs is absent: skip with the reason, or fail under
FC_TEST_REQUIRE_SERVICES=1 (CI, where .ci/run makes sure the services run)."""

import os

import pytest


def service_missing(reason):
    """Skip the test with `reason`; fail it instead when the services are required."""
    if os.environ.get("FC_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " — FC_TEST_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)
