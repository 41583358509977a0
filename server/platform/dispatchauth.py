"""The token that authenticates the router's callback (spec/platform.md §4.4): lowercase hex
HMAC-SHA256 over the dispatch job id, keyed by the 64-character hex of
HKDF-SHA256(FLOWCATALYST_APP_KEY, no salt, info "fc-dispatch-auth", 32 bytes). The scheduler
puts it in each message pointer's `authToken`; the router sends it as the bearer of
`POST /api/dispatch/process`; the callback recomputes and compares in constant time."""

import hashlib
import hmac

INFO = b"fc-dispatch-auth"


def hkdf_sha256(ikm, info, length=32, salt=b""):
    """RFC 5869 HKDF with SHA-256."""
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


class DispatchAuth:
    def __init__(self, app_key):
        app_key = (app_key or "").strip()
        if not app_key:
            raise ValueError(
                "FLOWCATALYST_APP_KEY is required: the scheduler and the dispatch callback refuse to run without it"
            )
        self._key = hkdf_sha256(app_key.encode("utf-8"), INFO).hex().encode("ascii")

    def token(self, job_id):
        return hmac.new(self._key, job_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def verify(self, job_id, token):
        if not isinstance(token, str):
            return False
        return hmac.compare_digest(
            self.token(job_id).encode(), token.strip().lower().encode("utf-8", "replace")
        )
