import json

import pytest

from flowcatalyst.core import BLOCK_ON_ERROR, IMMEDIATE, NEXT_ON_ERROR, MessageError, parse_message

BASE = {"id": "djb_1", "mediationType": "HTTP", "mediationTarget": "https://hooks.example.com/x"}


def pointer(**extra):
    d = dict(BASE)
    d.update(extra)
    return d


def test_full_rust_style_pointer_parses():
    m = parse_message(
        json.dumps(
            {
                "id": "djb_0HZXEQ9J1K2L3",
                "poolCode": "DISPATCH-POOL",
                "authToken": None,
                "signingSecret": None,
                "mediationType": "HTTP",
                "mediationTarget": "http://localhost:8080/api/dispatch/process",
                "messageGroupId": "order-123",
                "highPriority": False,
                "dispatchMode": "BLOCK_ON_ERROR",
            }
        )
    )
    assert m.id == "djb_0HZXEQ9J1K2L3"
    assert m.pool_code == "DISPATCH-POOL"
    assert m.message_group_id == "order-123"
    assert m.dispatch_mode == BLOCK_ON_ERROR
    assert m.ordered and m.group == "order-123"
    assert not m.has_payload


def test_go_style_pointer_with_absent_optionals_gets_defaults():
    m = parse_message(BASE)
    assert m.pool_code == ""
    assert m.auth_token is None and m.signing_secret is None
    assert m.message_group_id is None and m.group == "__DEFAULT__"
    assert m.high_priority is False
    assert m.dispatch_mode == IMMEDIATE and not m.ordered


def test_bytes_input_and_round_trip():
    m = parse_message(json.dumps(pointer(dispatchMode="NEXT_ON_ERROR", messageGroupId="g")).encode())
    again = parse_message(m.to_json())
    assert again.to_dict() == m.to_dict()
    assert set(m.to_dict()) == {
        "id",
        "poolCode",
        "authToken",
        "signingSecret",
        "mediationType",
        "mediationTarget",
        "messageGroupId",
        "highPriority",
        "dispatchMode",
    }


@pytest.mark.parametrize("value, expected", [("block_on_error", BLOCK_ON_ERROR), ("Next_On_Error", NEXT_ON_ERROR), ("SOMETHING", IMMEDIATE), (None, IMMEDIATE)])
def test_dispatch_mode_is_lenient(value, expected):
    assert parse_message(pointer(dispatchMode=value)).dispatch_mode == expected


def test_mediation_type_is_case_insensitive_http_only():
    assert parse_message(pointer(mediationType="http")).mediation_type == "HTTP"
    with pytest.raises(MessageError) as e:
        parse_message(pointer(mediationType="SQS"))
    assert e.value.field == "mediationType"


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"mediationType": "HTTP", "mediationTarget": "http://x/"}, "id", "required"),
        (pointer(id=""), "id", "empty"),
        (pointer(id=12), "id", "string, got number"),
        (pointer(id="x" * 600), "id", "longer"),
        ({"id": "a", "mediationTarget": "http://x/"}, "mediationType", "required"),
        ({"id": "a", "mediationType": "HTTP"}, "mediationTarget", "required"),
        (pointer(mediationTarget="ftp://x/"), "mediationTarget", "http:// or https://"),
        (pointer(mediationTarget="http:///path"), "mediationTarget", "not a valid URL"),
        (pointer(mediationTarget="http://a b/"), "mediationTarget", "not a valid URL"),
        (pointer(highPriority="yes"), "highPriority", "true or false"),
        (pointer(poolCode=5), "poolCode", "string"),
        (pointer(messageGroupId=["g"]), "messageGroupId", "string, got array"),
        (pointer(authToken={}), "authToken", "string, got object"),
        (pointer(headers=["x"]), "headers", "object"),
        (pointer(headers={"Bad Name": "v"}), "headers.Bad Name", "header name"),
        (pointer(headers={"Content-Length": "5"}), "headers.Content-Length", "set by the router"),
        (pointer(headers={"host": "evil"}), "headers.host", "set by the router"),
        (pointer(headers={"X-A": 1}), "headers.X-A", "string"),
        (pointer(headers={"X-A": "a\r\nX-Injected: 1"}), "headers.X-A", "line breaks"),
        (pointer(signingSecret="whsec_"), "signingSecret", "base64"),
        (pointer(signingSecret="whsec_!!!"), "signingSecret", "base64"),
    ],
)
def test_malformed_pointers_name_the_field(body, field, words):
    with pytest.raises(MessageError) as e:
        parse_message(body)
    assert e.value.field == field
    assert words in str(e.value)
    assert str(e.value).startswith(field + ":")


@pytest.mark.parametrize("raw", [b"not json", b"{", b"\xff\xfe", "", "[1,2]", "null", "42"])
def test_garbage_bodies_are_message_errors(raw):
    with pytest.raises(MessageError):
        parse_message(raw)


def test_payload_extension_any_json():
    for payload in ({"order": 1}, [1, 2], "text", 3.5, None, False):
        m = parse_message(pointer(payload=payload, headers={"X-Event": "order.created"}))
        assert m.has_payload and m.payload == payload
        assert m.headers == {"X-Event": "order.created"}
        assert parse_message(m.to_json()).payload == payload


def test_standard_webhooks_secret_is_accepted():
    m = parse_message(pointer(signingSecret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    assert m.signing_secret.startswith("whsec_")
