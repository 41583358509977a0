"""Tiny assertion helpers for scenarios that run under MicroPython (no pytest there)."""

import sys

_failures = []


def check(condition, what):
    if condition:
        print("ok  ", what)
    else:
        print("FAIL", what)
        _failures.append(what)


def equal(got, expected, what):
    check(got == expected, "%s: got %r, expected %r" % (what, got, expected))


def finish():
    if _failures:
        print("%d check(s) failed" % len(_failures))
        sys.exit(1)
    print("all checks passed")


def pointer(url, id, group=None, mode="IMMEDIATE", pool="P"):
    return {"id": id, "poolCode": pool, "mediationType": "HTTP", "mediationTarget": url, "messageGroupId": group, "dispatchMode": mode}
