"""Authentication as the controller does it: OAuth client_credentials tokens and HTTP Basic."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from urllib.parse import parse_qs

from artq.sources.simulator.config import SimulatorConfig

FORM_TYPES = ("application/x-www-form-urlencoded", "application/vnd.appd.cntrl+protobuf")


class TokenError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Authenticator:
    """Issues and checks tokens; ``clock`` returns epoch seconds (the simulator's ``now``)."""

    def __init__(self, cfg: SimulatorConfig, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.clock = clock
        self._key = secrets.token_bytes(32)  # tokens of one simulator run mean nothing to another
        self._tokens: dict[str, float] = {}  # token -> expiry (epoch s)
        self._lock = threading.Lock()

    def issue(self, content_type: str, body: bytes, query: str) -> dict:
        """Answer a POST to the token endpoint: fields in a form body or in the query string."""
        ctype = content_type.split(";")[0].strip().lower()
        if ctype == "application/json":
            raise TokenError(415, "Unsupported content type application/json: send the fields "
                                  "form-encoded with Content-Type: application/x-www-form-urlencoded.")
        fields = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if body:
            fields.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()})
        if fields.get("grant_type") != "client_credentials":
            raise TokenError(400, "grant_type must be client_credentials.")
        cid, secret = fields.get("client_id", ""), fields.get("client_secret", "")
        ok = (
            self.cfg.client_id is not None
            and self.cfg.client_secret is not None
            and _same(cid, self.cfg.client_id)
            and _same(secret, self.cfg.client_secret)
        )
        if not ok:
            raise TokenError(401, "Invalid client_id or client_secret.")
        now = self.clock()
        ttl = self.cfg.token_ttl_s
        header = _b64(json.dumps({"kid": "artq-sim", "alg": "HS256"}).encode())
        payload = _b64(json.dumps({"sub": cid, "iat": int(now), "exp": int(now + ttl),
                                   "jti": secrets.token_hex(8)}).encode())
        sig = _b64(hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        token = f"{header}.{payload}.{sig}"
        with self._lock:
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}  # forget expired ones
            self._tokens[token] = now + ttl
        return {"access_token": token, "expires_in": int(ttl), "token_type": "Bearer"}

    def check(self, authorization: str | None) -> str | None:
        """None when the header is good, else why not (the 401 body)."""
        if not authorization:
            return "Authentication required: send Basic user@account:password or a Bearer token."
        scheme, _, cred = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            with self._lock:
                expiry = self._tokens.get(cred.strip())
            if expiry is None:
                return "Invalid access token."
            if self.clock() >= expiry:
                return "Access token expired: request a new one from /controller/api/oauth/access_token."
            return None
        if scheme == "basic":
            try:
                user, _, password = base64.b64decode(cred.strip()).decode().partition(":")
            except ValueError:
                return "Malformed Basic credentials."
            if self._basic_ok(user, password):
                return None
            return "Invalid username or password (Basic auth expects user@account:password)."
        return f"Unsupported authorization scheme {scheme!r}."

    def _basic_ok(self, user: str, password: str) -> bool:
        want_user, want_pw = self.cfg.username, self.cfg.password
        if not want_user or want_pw is None:
            return False
        full = want_user if "@" in want_user else f"{want_user}@{self.cfg.account}"
        return _same(user, full) and _same(password, want_pw)


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes non-ASCII text (str compare_digest refuses it: a 500)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
