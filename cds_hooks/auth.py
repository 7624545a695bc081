"""The EHR's JWT on every service call, checked against static trusted issuers.

`--trusted-issuers FILE` is `{"issuers": [{"iss": "...", "jwks": {"keys": [...]}}]}`.
Keys are never fetched (no `jku`, no `x5u`): a token verifies with a key of
its own issuer from that file or not at all. Required: a trusted `iss`, a
signature with `ES384`, `RS384`, `ES256` or `RS256` (never `none`, never
HMAC), `aud` equal to the URL of the service called, `exp` in the future,
`iat` not in the future (60 s leeway), and a `jti` not seen before while its
token lives (a replay cache bounded in size and time). Signature checks are
PyJWT's (with `cryptography`), not ours.

A refusal says nothing to the caller (401, empty body) and logs only its
reason code, never the token or what it claims.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256")
LEEWAY_SECONDS = 60
MAX_REMEMBERED_JTIS = 100_000


class Unauthorized(Exception):
    """The call is refused; `args[0]` is a reason code for the log (no token content)."""


@dataclass(frozen=True)
class Issuer:
    iss: str
    keys: tuple[tuple[str | None, Any], ...]  # (kid, public key)


def load_issuers(path: str | Path) -> dict[str, Issuer]:
    """The trusted issuers and their public keys; `ValueError` naming the
    problem (never a key) for a file that cannot be used."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read trusted issuers ({type(error).__name__})") from None
    issuers: dict[str, Issuer] = {}
    entries = document.get("issuers") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected {{'issuers': [{{'iss': ..., 'jwks': ...}}]}}")
    for index, entry in enumerate(entries):
        try:
            iss = entry["iss"]
            keys = tuple((key.get("kid"), _public_key(key)) for key in entry["jwks"]["keys"])
        except (KeyError, TypeError, ValueError, jwt.PyJWTError) as error:
            raise ValueError(f"{path}: issuers[{index}]: {type(error).__name__}") from None
        if not isinstance(iss, str) or not iss or not keys:
            raise ValueError(f"{path}: issuers[{index}] needs an iss and at least one key")
        issuers[iss] = Issuer(iss, keys)
    return issuers


def _public_key(jwk: dict[str, Any]) -> Any:
    if jwk.get("kty") not in ("EC", "RSA"):
        raise ValueError("only EC and RSA keys")  # never a symmetric (HMAC) key
    if "d" in jwk:
        raise ValueError("a private key in the trusted issuers file")
    return jwt.PyJWK(jwk).key


class ReplayCache:
    """The `jti`s seen, each until its token expires; at most `limit` remembered
    (when full, the soonest-expiring are forgotten first: they are the ones
    whose tokens stop being accepted soonest anyway)."""

    def __init__(self, limit: int = MAX_REMEMBERED_JTIS) -> None:
        self._limit = limit
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, iss: str, jti: str, expires: float, now: float) -> bool:
        with self._lock:
            for key in [k for k, until in self._seen.items() if until < now]:
                del self._seen[key]
            if (iss, jti) in self._seen:
                return False
            if len(self._seen) >= self._limit:
                soonest = min(self._seen, key=self._seen.__getitem__)
                del self._seen[soonest]
            self._seen[(iss, jti)] = expires + LEEWAY_SECONDS
            return True


class Verifier:
    def __init__(self, issuers: dict[str, Issuer], replays: ReplayCache | None = None) -> None:
        self._issuers = issuers
        self._replays = replays or ReplayCache()

    def verify(self, authorization: str | None, audiences: Iterable[str]) -> dict[str, Any]:
        """The token's claims, or `Unauthorized` with a reason code."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("NO_TOKEN")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("MALFORMED") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("ALGORITHM")
        issuer = self._issuers.get(unverified.get("iss"))  # type: ignore[arg-type]
        if issuer is None:
            raise Unauthorized("UNKNOWN_ISSUER")
        kid = header.get("kid")
        candidates = [key for key_id, key in issuer.keys if kid is None or key_id in (kid, None)]
        claims = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[header["alg"]],
                    audience=list(audiences),
                    issuer=issuer.iss,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["iss", "aud", "exp", "iat", "jti"]},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthorized("EXPIRED") from None
            except jwt.InvalidAudienceError:
                raise Unauthorized("AUDIENCE") from None
            except jwt.ImmatureSignatureError:
                raise Unauthorized("NOT_YET_VALID") from None
            except jwt.MissingRequiredClaimError:
                raise Unauthorized("MISSING_CLAIM") from None
            except jwt.PyJWTError:
                raise Unauthorized("INVALID") from None
        if claims is None:
            raise Unauthorized("SIGNATURE")
        now = time.time()
        if float(claims["iat"]) > now + LEEWAY_SECONDS:
            raise Unauthorized("ISSUED_IN_FUTURE")
        if not self._replays.first_use(issuer.iss, str(claims["jti"]), float(claims["exp"]), now):
            raise Unauthorized("REPLAYED")
        return claims
