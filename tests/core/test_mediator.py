"""Behaviour of the mediator (core/mediator.py, router spec §4): the request it builds for a
message pointer, and what `HttpMediator.mediate` does with the answers of a real HTTP target
on loopback (classification and in-mediator retries)."""

import asyncio
import base64
import email.utils
import json
import time

import pytest

from flowcatalyst.core import (
    HttpClient,
    HttpMediator,
    MessageError,
    build_request,
    parse_message,
    verify,
    verify_standard,
)
from flowcatalyst.core.classify import (
    DEFERRED,
    ERROR_CONFIG,
    ERROR_CONNECTION,
    ERROR_PROCESS,
    RATE_LIMITED,
    SUCCESS,
)
from flowcatalyst.core.timefmt import parse_iso_utc
from tests.support.ports import free_port

SPEC_SECRET = "test-secret-do-not-use-in-prod"
SPEC_NOW = parse_iso_utc("2026-01-01T00:00:00.000Z")
SPEC_SIGNATURE = "4c53b4f3224c8c870cd4f12e03a6903233153f26777708dd3afab915b2eb3819"
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
FAST = (0.01,)  # retry delay for tests: the retries are what matters, not the wait


def pointer(target_url, **extra):
    data = {"id": "msg-1", "mediationType": "HTTP", "mediationTarget": target_url}
    data.update(extra)
    return parse_message(data)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def names(headers):
    """Header names, lower-cased, in a sorted list (duplicates kept)."""
    return sorted(name.lower() for name in headers)


def mediate(message, transport=None, **options):
    """Run HttpMediator(...).mediate(message) with fast retries; returns the Outcome."""
    options.setdefault("retry_delays", FAST)

    async def main():
        mediator = HttpMediator(transport, **options)
        try:
            return await mediator.mediate(message)
        finally:
            await mediator.close()

    return asyncio.run(asyncio.wait_for(main(), 5))


class CountingTransport:
    """The real HttpClient, with a count of the sends made through it (for failures where
    no request reaches any server)."""

    def __init__(self, **options):
        self.client = HttpClient(**options)
        self.sends = []

    async def send(self, method, url, headers, body, timeout):
        self.sends.append((method, url, timeout))
        return await self.client.send(method, url, headers, body, timeout)

    async def close(self):
        await self.client.close()


# -- build_request: pure ----------------------------------------------------------------------------


def test_body_is_exactly_the_compact_message_id():
    url, headers, body = build_request(pointer("https://hooks.example.com/x?a=1"), SPEC_NOW)
    assert url == "https://hooks.example.com/x?a=1"
    assert body == b'{"messageId":"msg-1"}'
    assert headers == {"Content-Type": "application/json", "Accept": "application/json"}


@pytest.mark.parametrize(
    "msg_id",
    ["djb_0HZXEQ9J1K2L3", "550e8400-e29b-41d4-a716-446655440000", 'q"uote\\back/slash', "zoë ✓ 日本", "tab\tnl\n"],
)
def test_body_escapes_like_compact_json_and_keeps_unicode(msg_id):
    _, _, body = build_request(pointer("http://h.test/", id=msg_id), SPEC_NOW)
    assert body == compact({"messageId": msg_id})
    assert json.loads(body) == {"messageId": msg_id}


def test_build_request_is_pure():
    message = pointer("http://h.test/", authToken="t", signingSecret="s", headers={"X-A": "1"})
    first = build_request(message, 1_800_000_000.25)
    second = build_request(message, 1_800_000_000.25)
    assert first == second
    assert message.headers == {"X-A": "1"}  # the pointer is not modified
    later = build_request(message, 1_800_000_001.0)
    assert later[1]["X-FLOWCATALYST-TIMESTAMP"] != first[1]["X-FLOWCATALYST-TIMESTAMP"]


def test_signature_matches_the_spec_vector():
    message = pointer("http://h.test/", id="msg_TEST123456", signingSecret=SPEC_SECRET)
    _, headers, body = build_request(message, SPEC_NOW)
    assert body == b'{"messageId":"msg_TEST123456"}'
    assert headers["X-FLOWCATALYST-SIGNATURE"] == SPEC_SIGNATURE
    assert headers["X-FLOWCATALYST-TIMESTAMP"] == "2026-01-01T00:00:00.000Z"
    assert verify(SPEC_SECRET, body, SPEC_SIGNATURE, "2026-01-01T00:00:00.000Z", now=SPEC_NOW)


def test_timestamp_has_milliseconds():
    message = pointer("http://h.test/", signingSecret="s")
    _, headers, _ = build_request(message, SPEC_NOW + 1.2345)
    assert headers["X-FLOWCATALYST-TIMESTAMP"] == "2026-01-01T00:00:01.235Z"


@pytest.mark.parametrize(
    "payload",
    [
        {"event": "order.created", "data": {"id": 7, "tags": ["a", "b"], "price": 1.5}},
        [1, "two", None, {"three": 3}],
        "just a string",
        "",
        None,
        0,
        -12,
        True,
        False,
        {},
        [],
        {"text": "zoë ✓", "quote": '"', "slash": "/"},
    ],
)
def test_payload_is_sent_instead_of_the_message_id(payload):
    _, headers, body = build_request(pointer("http://h.test/", payload=payload), SPEC_NOW)
    assert body == compact(payload)
    assert json.loads(body) == payload
    assert headers["Content-Type"] == "application/json"


def test_null_payload_differs_from_no_payload():
    assert build_request(pointer("http://h.test/", payload=None), SPEC_NOW)[2] == b"null"
    assert build_request(pointer("http://h.test/"), SPEC_NOW)[2] == b'{"messageId":"msg-1"}'


def test_payload_from_a_json_pointer_keeps_key_order():
    text = '{"id":"m","mediationType":"HTTP","mediationTarget":"http://h.test/","payload":{"z":1,"a":{"y":2,"b":3}}}'
    _, _, body = build_request(parse_message(text), SPEC_NOW)
    assert body == b'{"z":1,"a":{"y":2,"b":3}}'


def test_payload_is_what_gets_signed():
    message = pointer("http://h.test/", payload={"k": [1, 2]}, signingSecret=SPEC_SECRET)
    _, headers, body = build_request(message, SPEC_NOW)
    assert body == b'{"k":[1,2]}'
    sig, ts = headers["X-FLOWCATALYST-SIGNATURE"], headers["X-FLOWCATALYST-TIMESTAMP"]
    assert verify(SPEC_SECRET, body, sig, ts, now=SPEC_NOW)
    assert not verify(SPEC_SECRET, b'{"messageId":"msg-1"}', sig, ts, now=SPEC_NOW)


def test_pointer_headers_are_added():
    message = pointer("http://h.test/", headers={"X-Tenant": "t1", "X-Trace": "abc"})
    _, headers, _ = build_request(message, SPEC_NOW)
    assert headers == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Tenant": "t1",
        "X-Trace": "abc",
    }


@pytest.mark.parametrize("name", ["Content-Type", "content-type", "CONTENT-TYPE", "cOnTeNt-TyPe"])
def test_pointer_header_overrides_content_type_in_any_case(name):
    message = pointer("http://h.test/", payload={"a": 1}, headers={name: "application/cloudevents+json"})
    _, headers, _ = build_request(message, SPEC_NOW)
    assert names(headers) == ["accept", "content-type"]
    assert headers[name] == "application/cloudevents+json"


def test_pointer_header_overrides_accept():
    _, headers, _ = build_request(pointer("http://h.test/", headers={"accept": "*/*"}), SPEC_NOW)
    assert headers == {"Content-Type": "application/json", "accept": "*/*"}


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "CONNECTION"])
def test_reserved_headers_cannot_be_set_by_a_pointer(name):
    with pytest.raises(MessageError) as info:
        pointer("http://h.test/", headers={name: "x"})
    assert info.value.field == "headers." + name


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Evil": "a\r\nHost: other"},
        {"X-Evil": "a\nb"},
        {"Bad Name": "x"},
        {"X:Colon": "x"},
        {"": "x"},
        {"X-Num": 1},
        ["X-A", "1"],
    ],
)
def test_pointer_headers_that_could_break_the_request_are_rejected(headers):
    with pytest.raises(MessageError):
        pointer("http://h.test/", headers=headers)


def test_auth_token_becomes_a_bearer_header():
    _, headers, _ = build_request(pointer("http://h.test/", authToken="abc.def"), SPEC_NOW)
    assert headers["Authorization"] == "Bearer abc.def"


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION"])
def test_auth_token_wins_over_a_pointer_authorization_header(name):
    message = pointer("http://h.test/", authToken="tok", headers={name: "Basic eDp5"})
    _, headers, _ = build_request(message, SPEC_NOW)
    assert names(headers).count("authorization") == 1
    assert [v for k, v in headers.items() if k.lower() == "authorization"] == ["Bearer tok"]


def test_pointer_authorization_header_is_sent_without_auth_token():
    _, headers, _ = build_request(pointer("http://h.test/", headers={"Authorization": "Basic eDp5"}), SPEC_NOW)
    assert headers["Authorization"] == "Basic eDp5"


def test_pointer_headers_cannot_forge_signature_headers():
    forged = {"x-flowcatalyst-signature": "0" * 64, "X-Flowcatalyst-Timestamp": "2000-01-01T00:00:00.000Z"}
    message = pointer("http://h.test/", id="msg_TEST123456", signingSecret=SPEC_SECRET, headers=forged)
    _, headers, _ = build_request(message, SPEC_NOW)
    assert names(headers).count("x-flowcatalyst-signature") == 1
    assert names(headers).count("x-flowcatalyst-timestamp") == 1
    assert headers["X-FLOWCATALYST-SIGNATURE"] == SPEC_SIGNATURE
    assert headers["X-FLOWCATALYST-TIMESTAMP"] == "2026-01-01T00:00:00.000Z"


def test_no_signing_headers_without_a_secret():
    _, headers, _ = build_request(pointer("http://h.test/"), SPEC_NOW)
    assert not [k for k in headers if k.lower().startswith(("x-flowcatalyst", "webhook-"))]


def test_whsec_secret_gives_standard_webhooks_headers():
    message = pointer("http://h.test/", id="msg_std", signingSecret=WHSEC, headers={"Webhook-Id": "forged"})
    _, headers, body = build_request(message, SPEC_NOW + 0.9)
    assert names(headers) == ["accept", "content-type", "webhook-id", "webhook-signature", "webhook-timestamp"]
    assert headers["webhook-id"] == "msg_std"
    assert headers["webhook-timestamp"] == str(int(SPEC_NOW))
    assert headers["webhook-signature"].startswith("v1,")
    assert verify_standard(
        WHSEC, "msg_std", headers["webhook-timestamp"], headers["webhook-signature"], body, now=SPEC_NOW
    )
    assert not verify_standard(
        WHSEC, "other-id", headers["webhook-timestamp"], headers["webhook-signature"], body, now=SPEC_NOW
    )


def test_max_attempts_must_be_positive():
    with pytest.raises(ValueError):
        HttpMediator(max_attempts=0)


def test_default_transport_is_the_core_client():
    assert isinstance(HttpMediator().transport, HttpClient)


# -- HttpMediator against a real target ----------------------------------------------------------------


def test_success_sends_one_post_with_the_exact_body(target):
    outcome = mediate(pointer(target.url("/ok"), id="djb_42"))
    assert (outcome.result, outcome.status, outcome.acked) == (SUCCESS, 200, True)
    (rec,) = target.received()
    assert (rec.method, rec.path, rec.body) == ("POST", "/ok", b'{"messageId":"djb_42"}')
    assert rec.headers["content-type"] == "application/json"
    assert rec.headers["accept"] == "application/json"
    assert rec.headers["content-length"] == str(len(rec.body))
    assert "authorization" not in rec.headers


def test_signature_verifies_over_the_bytes_the_target_received(target):
    started = time.time()
    outcome = mediate(pointer(target.url("/ok"), id="djb_sig", signingSecret="s3cr3t"))
    assert outcome.result == SUCCESS
    (rec,) = target.received()
    sig, ts = rec.headers["x-flowcatalyst-signature"], rec.headers["x-flowcatalyst-timestamp"]
    assert len(sig) == 64 and sig == sig.lower()
    assert started - 1 <= parse_iso_utc(ts) <= time.time() + 1
    assert verify("s3cr3t", rec.body, sig, ts)
    assert not verify("s3cr3t", rec.body + b" ", sig, ts)
    assert not verify("other", rec.body, sig, ts)


def test_signed_payload_and_pointer_headers_arrive_intact(target):
    payload = {"event": "invoice.paid", "amount": 1250, "note": "zoë ✓"}
    message = pointer(
        target.url("/hook"),
        payload=payload,
        signingSecret="s3cr3t",
        authToken="tok-1",
        headers={"X-Tenant": "acme", "content-type": "application/vnd.acme+json"},
    )
    assert mediate(message).result == SUCCESS
    (rec,) = target.received()
    assert rec.body == compact(payload)
    assert rec.headers["x-tenant"] == "acme"
    assert rec.headers["content-type"] == "application/vnd.acme+json"
    assert rec.head.lower().count(b"content-type:") == 1
    assert rec.headers["authorization"] == "Bearer tok-1"
    assert verify("s3cr3t", rec.body, rec.headers["x-flowcatalyst-signature"], rec.headers["x-flowcatalyst-timestamp"])


def test_auth_token_is_sent_once_even_with_a_pointer_authorization_header(target):
    message = pointer(target.url("/ok"), authToken="tok", headers={"authorization": "Basic eDp5"})
    assert mediate(message).result == SUCCESS
    (rec,) = target.received()
    assert rec.head.lower().count(b"authorization:") == 1
    assert rec.headers["authorization"] == "Bearer tok"


def test_standard_webhooks_signature_verifies_at_the_target(target):
    message = pointer(target.url("/ok"), id="msg_std_1", signingSecret=WHSEC, payload=[1, 2, 3])
    assert mediate(message).result == SUCCESS
    (rec,) = target.received()
    assert rec.body == b"[1,2,3]"
    assert rec.headers["webhook-id"] == "msg_std_1"
    assert verify_standard(
        WHSEC, rec.headers["webhook-id"], rec.headers["webhook-timestamp"], rec.headers["webhook-signature"], rec.body
    )
    assert "x-flowcatalyst-signature" not in rec.headers


def test_signature_still_verifies_after_a_307_redirect(target):
    message = pointer(target.url("/redirect/307?to=/final"), signingSecret="s3cr3t")
    assert mediate(message).result == SUCCESS
    first, final = target.received()
    assert (final.method, final.path, final.body) == ("POST", "/final", first.body)
    assert verify("s3cr3t", final.body, final.headers["x-flowcatalyst-signature"], final.headers["x-flowcatalyst-timestamp"])


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_up_to_max_attempts(target, status):
    outcome = mediate(pointer(target.url("/status/%d" % status)), max_attempts=3)
    assert (outcome.result, outcome.status) == (ERROR_PROCESS, status)
    assert outcome.message == "HTTP %d: Server error" % status
    assert outcome.nack_delay == 30
    assert len(target.received()) == 3
    assert len({r.body for r in target.received()}) == 1  # the same delivery each time


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_max_attempts_counts_every_request(target, attempts):
    outcome = mediate(pointer(target.url("/status/500")), max_attempts=attempts)
    assert outcome.result == ERROR_PROCESS
    assert len(target.received()) == attempts


def test_a_retry_that_succeeds_stops_retrying(target):
    outcome = mediate(pointer(target.url("/flaky/2/a")), max_attempts=5)
    assert outcome.result == SUCCESS
    assert len(target.received()) == 3


def test_the_last_outcome_is_returned(target):
    outcome = mediate(pointer(target.url("/flaky/3/b")), max_attempts=3)
    assert (outcome.result, outcome.status) == (ERROR_PROCESS, 500)
    assert len(target.received()) == 3


@pytest.mark.parametrize(
    "status, message, warning",
    [
        (400, "HTTP 400: Bad request", "ERROR"),
        (401, "HTTP 401: Auth error", "ERROR"),
        (403, "HTTP 403: Auth error", "ERROR"),
        (404, "HTTP 404: Not found", "ERROR"),
        (422, "HTTP 422: Client error", None),
        (501, "HTTP 501: Not implemented", "CRITICAL"),
    ],
)
def test_client_errors_are_not_retried(target, status, message, warning):
    outcome = mediate(pointer(target.url("/status/%d" % status)), max_attempts=3)
    assert (outcome.result, outcome.status, outcome.message, outcome.warning) == (ERROR_CONFIG, status, message, warning)
    assert outcome.acked
    assert len(target.received()) == 1


def test_rate_limited_honours_retry_after_seconds(target):
    outcome = mediate(pointer(target.url("/status/429?retry_after=7")), max_attempts=3)
    assert (outcome.result, outcome.status, outcome.delay, outcome.nack_delay) == (RATE_LIMITED, 429, 7, 7)
    assert len(target.received()) == 1


def test_rate_limited_honours_retry_after_http_date(target):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    target.on("/busy", lambda rec: (429, {"Retry-After": when}, b""))
    outcome = mediate(pointer(target.url("/busy")), max_attempts=3)
    assert outcome.result == RATE_LIMITED
    assert 110 <= outcome.delay <= 121
    assert len(target.received()) == 1


def test_rate_limited_without_retry_after_waits_30s(target):
    outcome = mediate(pointer(target.url("/status/429")), max_attempts=3)
    assert (outcome.result, outcome.delay) == (RATE_LIMITED, 30)
    assert len(target.received()) == 1


def test_ack_false_is_deferred_with_its_delay(target):
    outcome = mediate(pointer(target.url("/ackfalse?delay=12")), max_attempts=3)
    assert (outcome.result, outcome.status, outcome.delay, outcome.nack_delay) == (DEFERRED, 200, 12, 12)
    assert not outcome.acked
    assert len(target.received()) == 1


def test_ack_false_without_delay_defers_30s(target):
    target.on("/later", lambda rec: (202, {}, {"ack": False}))
    outcome = mediate(pointer(target.url("/later")), max_attempts=3)
    assert (outcome.result, outcome.status, outcome.delay, outcome.nack_delay) == (DEFERRED, 202, None, 30)
    assert len(target.received()) == 1


@pytest.mark.parametrize(
    "status, body",
    [(200, b""), (201, {"ack": True}), (202, b"accepted"), (204, b""), (200, b"[false]"), (200, {"ack": "false"})],
)
def test_other_2xx_answers_are_success(target, status, body):
    target.on("/answer", lambda rec: (status, {}, body))
    outcome = mediate(pointer(target.url("/answer")), max_attempts=3)
    assert (outcome.result, outcome.status) == (SUCCESS, status)
    assert len(target.received()) == 1


def test_connection_refused_is_retried_then_a_connection_error():
    transport = CountingTransport()
    url = "http://127.0.0.1:%d/hook" % free_port()
    outcome = mediate(pointer(url), transport, max_attempts=3)
    assert (outcome.result, outcome.status) == (ERROR_CONNECTION, None)
    assert outcome.message.startswith("Connection error: ")
    assert outcome.nack_delay == 30
    assert [m for m, _, _ in transport.sends] == ["POST"] * 3
    assert {u for _, u, _ in transport.sends} == {url}


def test_timeout_is_retried_then_a_connection_error(target):
    transport = CountingTransport()
    outcome = mediate(pointer(target.url("/slow/3000")), transport, max_attempts=2, timeout=0.2)
    assert (outcome.result, outcome.message) == (ERROR_CONNECTION, "Request timeout")
    assert [t for _, _, t in transport.sends] == [0.2, 0.2]
    target.wait_for(2, path="/slow/3000", timeout=2)


def test_transport_request_timeout_applies_when_the_mediator_has_none(target):
    transport = CountingTransport(request_timeout=0.2)
    outcome = mediate(pointer(target.url("/slow/3000")), transport, max_attempts=1)
    assert (outcome.result, outcome.message) == (ERROR_CONNECTION, "Request timeout")
    assert transport.sends[0][2] is None


def test_malformed_answer_is_a_retried_connection_error():
    connections = []

    async def garbage(reader, writer):
        connections.append(1)
        await reader.readline()
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        url = "http://127.0.0.1:%d/x" % server.sockets[0].getsockname()[1]
        mediator = HttpMediator(max_attempts=3, retry_delays=FAST)
        try:
            return await mediator.mediate(pointer(url))
        finally:
            await mediator.close()
            server.close()

    outcome = asyncio.run(asyncio.wait_for(main(), 5))
    assert outcome.result == ERROR_CONNECTION
    assert outcome.message.startswith("Request failed: ")
    assert len(connections) == 3


def test_retry_delays_are_waited_between_attempts(target):
    mediate(pointer(target.url("/status/500")), max_attempts=3, retry_delays=(0.1, 0.2))
    first, second, third = target.received()
    assert second.at - first.at >= 0.09
    assert third.at - second.at >= 0.19


def test_last_retry_delay_repeats(target):
    mediate(pointer(target.url("/status/500")), max_attempts=3, retry_delays=(0.1,))
    first, second, third = target.received()
    assert second.at - first.at >= 0.09
    assert third.at - second.at >= 0.09


def test_empty_retry_delays_still_make_every_attempt(target):
    outcome = mediate(pointer(target.url("/status/503")), max_attempts=4, retry_delays=())
    assert outcome.result == ERROR_PROCESS
    assert len(target.received()) == 4


def test_deliveries_reuse_the_connection_and_close_releases_it(target):
    async def main():
        client = HttpClient()
        mediator = HttpMediator(client, max_attempts=1, retry_delays=FAST)
        for i in range(5):
            assert (await mediator.mediate(pointer(target.url("/ok"), id="m%d" % i))).result == SUCCESS
        opened = client.connections_opened
        await mediator.close()
        assert (await mediator.mediate(pointer(target.url("/ok")))).result == SUCCESS
        await mediator.close()
        return opened, client.connections_opened

    assert asyncio.run(main()) == (1, 2)
    assert [r.body for r in target.received()][:5] == [b'{"messageId":"m%d"}' % i for i in range(5)]

