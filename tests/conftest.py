import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.target import Target  # noqa: E402


@pytest.fixture
def target():
    t = Target().start()
    yield t
    t.stop()
