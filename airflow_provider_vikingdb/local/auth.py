"""Check the signature of a received request, independently of the ``volcengine`` package.

The point of the local server is to catch clients that sign wrongly, so this module
re-derives the volcengine SignerV4 (HMAC-SHA256) signature from what was *received*
(raw path and query, the headers named in ``SignedHeaders`` with their received
values, the exact body bytes) with hashlib/hmac only. Importing ``volcengine`` here
would make a client bug and a verifier bug cancel out.

The algorithm (section 4 of the API contract):

    canonical request = lines: method, path, query, "name:value" per signed header,
                        the signed-header list joined by ";", body hash
    string to sign    = lines: "HMAC-SHA256", X-Date, {date}/{region}/{service}/request,
                        hex sha256 of the canonical request
    key               = HMAC chain over SK: date -> region -> service -> "request"
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

from airflow_provider_vikingdb.local import errors
from airflow_provider_vikingdb.local.errors import ApiError, unauthorized

ALGORITHM = "HMAC-SHA256"
SERVICE = "vikingdb"
#: How far X-Date may be from the server's clock, either way.
MAX_CLOCK_SKEW_SECONDS = 15 * 60

_X_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --- the signing algorithm, as plain functions (the test vector goes through these) ---


def canonical_path(raw_path: str) -> str:
    """volcengine's ``Util.norm_uri`` of the path the client meant.

    The client signs its unencoded path; what arrives is percent-encoded on the wire,
    so decode it first, then normalize exactly as the client did.
    """
    return quote(unquote(raw_path or "/")).replace("%2F", "/").replace("+", "%20")


def canonical_query(raw_query: str) -> str:
    """volcengine's ``Util.norm_query``: keys sorted, repeated keys in received order, safe ``-_.~``."""
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    parts = [
        quote(key, safe="-_.~") + "=" + quote(value, safe="-_.~")
        for key in sorted(grouped)
        for value in grouped[key]
    ]
    return "&".join(parts).replace("+", "%20")


def canonical_host(value: str) -> str:
    """Strip ``:80``/``:443`` from a Host value, exactly as volcengine does before signing."""
    if ":" in value:
        name, port = value.split(":")[:2]
        if port in ("80", "443"):
            return name
    return value


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    signed_headers: list[tuple[str, str]],
    body_sha256: str,
) -> str:
    """``signed_headers``: (lower-case name, value) pairs, in the order of the SignedHeaders list."""
    header_block = "".join(f"{name}:{value}\n" for name, value in signed_headers)
    names = ";".join(name for name, _ in signed_headers)
    return "\n".join(
        [method, canonical_path(raw_path), canonical_query(raw_query), header_block, names, body_sha256]
    )


def signing_key(sk: str, date: str, region: str, service: str = SERVICE) -> bytes:
    key = sk.encode("utf-8")
    for part in (date, region, service, "request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def string_to_sign(x_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, x_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])


def compute_signature(
    sk: str,
    region: str,
    x_date: str,
    method: str,
    raw_path: str,
    raw_query: str,
    signed_headers: list[tuple[str, str]],
    body: bytes,
    service: str = SERVICE,
) -> str:
    """The hex signature a correct client sends for these inputs."""
    date = x_date[:8]
    canonical = canonical_request(
        method, raw_path, raw_query, signed_headers, hashlib.sha256(body).hexdigest()
    )
    scope = f"{date}/{region}/{service}/request"
    key = signing_key(sk, date, region, service)
    return hmac.new(key, string_to_sign(x_date, scope, canonical).encode("utf-8"), hashlib.sha256).hexdigest()


# --- the Authorization header ---


@dataclass(frozen=True)
class SignedAuthorization:
    """``HMAC-SHA256 Credential={ak}/{date}/{region}/{service}/request, SignedHeaders=a;b, Signature=hex``."""

    ak: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> SignedAuthorization:
    """Parse an HMAC-SHA256 Authorization header; ApiError 401 InvalidAuthorization if malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise unauthorized(
            errors.INVALID_AUTHORIZATION,
            f"Authorization must start with '{ALGORITHM} ' or 'Bearer ', got {algorithm[:32]!r}.",
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, item_value = item.strip().partition("=")
        if not sep:
            raise unauthorized(errors.INVALID_AUTHORIZATION, f"Malformed Authorization element {item!r}.")
        parts[name] = item_value
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not parts.get(name)]
    if missing:
        raise unauthorized(errors.INVALID_AUTHORIZATION, f"Authorization lacks {', '.join(missing)}.")
    credential = parts["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise unauthorized(
            errors.INVALID_AUTHORIZATION,
            "Credential must be {AccessKey}/{yyyymmdd}/{region}/{service}/request.",
        )
    if not _HEX64.match(parts["Signature"]):
        raise unauthorized(errors.INVALID_AUTHORIZATION, "Signature must be 64 lower-case hex digits.")
    ak, date, region, service, terminator = credential
    signed = tuple(parts["SignedHeaders"].split(";"))
    if not all(signed):
        raise unauthorized(errors.INVALID_AUTHORIZATION, "SignedHeaders has an empty header name.")
    return SignedAuthorization(ak, date, region, service, terminator, signed, parts["Signature"])


def parse_x_date(value: str) -> float:
    """``%Y%m%dT%H%M%SZ`` (UTC) to a POSIX timestamp."""
    return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))


# --- the verifier ---


class RequestVerifier:
    """Decides whether a received request is authenticated; raises ApiError 401 saying why not.

    ``keys`` maps access keys to secret keys. ``api_key``, when set, is also accepted
    as ``Authorization: Bearer <api_key>``.
    """

    def __init__(
        self,
        keys: Mapping[str, str],
        region: str,
        *,
        api_key: str | None = None,
        service: str = SERVICE,
        max_clock_skew: float = MAX_CLOCK_SKEW_SECONDS,
    ) -> None:
        self.keys = dict(keys)
        self.region = region
        self.api_key = api_key
        self.service = service
        self.max_clock_skew = max_clock_skew

    def verify(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        now: float | None = None,
    ) -> str:
        """Return who is calling (the AK, or ``"api-key"``). ``headers`` must have lower-case names."""
        authorization = headers.get("authorization")
        if not authorization:
            raise unauthorized(
                errors.MISSING_AUTHENTICATION_TOKEN, "The request has no Authorization header."
            )
        if authorization.startswith("Bearer "):
            return self._verify_api_key(authorization[len("Bearer ") :].strip())

        auth = parse_authorization(authorization)
        sk = self.keys.get(auth.ak)
        if sk is None:
            raise unauthorized(
                errors.INVALID_ACCESS_KEY, f"The access key {auth.ak!r} included in the request is invalid."
            )
        if (auth.region, auth.service, auth.terminator) != (self.region, self.service, "request"):
            raise unauthorized(
                errors.INVALID_CREDENTIAL_SCOPE,
                f"Credential scope is {auth.region}/{auth.service}/{auth.terminator}, "
                f"this server accepts {self.region}/{self.service}/request.",
            )
        x_date = headers.get("x-date", "")
        if not _X_DATE.match(x_date):
            raise unauthorized(
                errors.INVALID_AUTHORIZATION, "X-Date header is missing or not in %Y%m%dT%H%M%SZ form."
            )
        if auth.date != x_date[:8]:
            raise unauthorized(
                errors.INVALID_CREDENTIAL_SCOPE,
                f"Credential scope date {auth.date} is not the date of X-Date {x_date}.",
            )
        try:
            signed_at = parse_x_date(x_date)
        except ValueError:
            raise unauthorized(errors.INVALID_AUTHORIZATION, f"X-Date {x_date!r} is not a date.") from None
        skew = (time.time() if now is None else now) - signed_at
        if abs(skew) > self.max_clock_skew:
            raise unauthorized(
                errors.REQUEST_EXPIRED,
                f"X-Date {x_date} is {abs(skew):.0f} s away from the server's clock "
                f"(at most {self.max_clock_skew:.0f} s allowed).",
            )
        if "x-security-token" in headers and "x-security-token" not in auth.signed_headers:
            raise unauthorized(
                errors.SECURITY_TOKEN_NOT_SIGNED,
                "X-Security-Token is present but not listed in SignedHeaders.",
            )
        absent = [name for name in auth.signed_headers if name not in headers]
        if absent:
            raise unauthorized(
                errors.INVALID_AUTHORIZATION,
                f"SignedHeaders names header(s) the request does not have: {', '.join(absent)}.",
            )
        body_sha256 = hashlib.sha256(body).hexdigest()
        claimed = headers.get("x-content-sha256")
        if claimed is not None and claimed != body_sha256:
            raise unauthorized(
                errors.CONTENT_SHA256_MISMATCH,
                f"X-Content-Sha256 is {claimed[:64]!r} but the received body hashes to {body_sha256}.",
            )
        signed = [
            (name, canonical_host(headers[name]) if name == "host" else headers[name])
            for name in auth.signed_headers
        ]
        expected = compute_signature(
            sk, auth.region, x_date, method, raw_path, raw_query, signed, body, service=auth.service
        )
        if not hmac.compare_digest(expected, auth.signature):
            raise unauthorized(
                errors.SIGNATURE_DOES_NOT_MATCH,
                "The request signature we calculated does not match the signature you provided. "
                "Check your Secret Access Key and signing method.",
            )
        return auth.ak

    def _verify_api_key(self, key: str) -> str:
        if self.api_key is None:
            raise unauthorized(
                errors.INVALID_API_KEY, "API keys are not enabled on this server (start it with --api-key)."
            )
        if not hmac.compare_digest(key.encode("utf-8"), self.api_key.encode("utf-8")):
            raise unauthorized(errors.INVALID_API_KEY, "The API key in the Bearer token is not valid.")
        return "api-key"


__all__ = [
    "ALGORITHM",
    "MAX_CLOCK_SKEW_SECONDS",
    "SERVICE",
    "ApiError",
    "RequestVerifier",
    "SignedAuthorization",
    "canonical_host",
    "canonical_path",
    "canonical_query",
    "canonical_request",
    "compute_signature",
    "parse_authorization",
    "signing_key",
    "string_to_sign",
]
