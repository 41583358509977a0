import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))  # tools/selfsigned.py

from tests.support.target import Target  # noqa: E402


@pytest.fixture
def target():
    t = Target().start()
    yield t
    t.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """(cert_file, key_file) of a self-signed certificate for 127.0.0.1 and localhost."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        pytest.skip("the cryptography package is needed to make a test certificate")
    from selfsigned import write_self_signed  # tools/selfsigned.py

    return write_self_signed(tmp_path_factory.mktemp("tls"))


# -- SQS: a moto server on a free loopback port (tests/support/moto.py) -------------------------


@pytest.fixture(scope="session")
def moto_server():
    from tests.support.moto import MotoServer, moto_available

    missing = moto_available()
    if missing:
        pytest.skip(missing)
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def sqs(moto_server, monkeypatch):
    """The moto server, with this test's AWS environment pointing at it."""
    from tests.support.moto import set_environment

    set_environment(monkeypatch, moto_server)
    return moto_server
