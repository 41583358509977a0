import os

import pytest

from flowcatalyst.edge.settings import SETTINGS, SettingsError, help_text, parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_defaults():
    s = parse([], environ={})
    assert (s.db_path, s.host, s.port, s.auth_mode, s.sqlite_sync) == ("./flowcatalyst-edge.db", "127.0.0.1", 8080, "NONE", "FULL")
    assert s.config_interval == 300 and s.shutdown_timeout == 30 and s.config_file is None


def test_flags_win_over_environment():
    s = parse(["--port", "9000", "--db=/tmp/x.db"], environ={"FC_API_PORT": "7000", "FC_DB_PATH": "/tmp/y.db", "AUTH_MODE": "token", "FC_API_TOKEN": "t"})
    assert s.port == 9000 and s.db_path == "/tmp/x.db" and s.auth_mode == "TOKEN"


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (["--port", "0x"], {}, "--port='0x'"),
        (["--port"], {}, "--port needs a value"),
        (["--bogus"], {}, "unknown argument --bogus"),
        ([], {"FC_API_PORT": "99999"}, "FC_API_PORT='99999': must be 1..65535"),
        ([], {"AUTH_MODE": "OIDC"}, "AUTH_MODE='OIDC': must be one of NONE, BASIC, TOKEN"),
        ([], {"FLOWCATALYST_CONFIG_INTERVAL": "0"}, "must be > 0"),
        ([], {"FC_SQLITE_SYNC": "sometimes"}, "FC_SQLITE_SYNC"),
    ],
)
def test_bad_values_name_the_flag_or_variable(argv, environ, message):
    with pytest.raises(SettingsError) as e:
        parse(argv, environ=environ)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (["--host", "0.0.0.0"], {}, "refusing to listen on 0.0.0.0 without authentication"),
        ([], {"AUTH_MODE": "BASIC", "AUTH_BASIC_USERNAME": "u"}, "needs AUTH_BASIC_USERNAME and AUTH_BASIC_PASSWORD"),
        ([], {"AUTH_MODE": "TOKEN"}, "needs FC_API_TOKEN"),
        (["--tls-cert", "x.pem"], {}, "--tls-cert and --tls-key go together"),
        (["--config", "/nonexistent.json"], {}, "file not found: /nonexistent.json"),
    ],
)
def test_combinations_that_cannot_work_are_refused(argv, environ, message):
    with pytest.raises(SettingsError) as e:
        parse(argv, environ=environ).validate()
    assert message in str(e.value)


def test_insecure_allows_open_listening_and_auth_allows_it_anyway():
    parse(["--host", "0.0.0.0", "--insecure"], environ={}).validate()
    parse(["--host", "0.0.0.0"], environ={"AUTH_MODE": "TOKEN", "FC_API_TOKEN": "x"}).validate()


def test_every_setting_is_in_help_and_in_the_docs():
    text = help_text("fc-edge")
    docs = open(os.path.join(ROOT, "docs", "edge.md")).read()
    for _, flag, env, _, _, _ in SETTINGS:
        assert env in text and env in docs, env
        if flag:
            assert flag in text and flag in docs, flag
