"""Transport security and access: TLS, mutual TLS and bearer tokens.

- TLS: `tls_cert` and `tls_key` (PEM files) make the port a TLS port.
- Mutual TLS: `tls_client_ca` (PEM, one or more CA certificates) additionally
  requires every client to present a certificate signed by one of them.
- Bearer tokens: `auth_token_file` holds one token per line (blank lines and
  lines starting with '#' are skipped). Every RPC except the standard health
  service must then carry `authorization: Bearer <token>` metadata; anything
  else is answered `UNAUTHENTICATED` (reason UNAUTHENTICATED), the same way
  for a missing, malformed or unknown token. Tokens are compared in constant
  time: the SHA-256 of the presented token against the SHA-256 of every
  configured token, with `hmac.compare_digest`, never stopping early.
- Without TLS the server is plaintext: fine on loopback (the default bind
  address), and logged as a warning on any other address.

Nothing here logs a token or a certificate.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import ssl
import stat
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import grpc

from server import errors
from server.logs import RateLimitedLog, method_name

log = logging.getLogger(__name__)

HEALTH_SERVICE_PREFIX = "/grpc.health.v1.Health/"
_PEM_MARKER = b"-----BEGIN "


class SecurityConfig(Protocol):
    """The fields of `server.app.ServerConfig` this module reads."""

    host: str
    tls_cert: str | None
    tls_key: str | None
    tls_client_ca: str | None
    auth_token_file: str | None


class ConfigurationError(ValueError):
    """A security setting cannot be used; the message says which and why (no secrets)."""


def _read(path: str, what: str, pem: bool = True) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{what} {path}: cannot read: {error.strerror}") from None
    if pem and _PEM_MARKER not in data:
        raise ConfigurationError(f"{what} {path}: not a PEM file")
    return data


def load_tokens(path: str) -> tuple[str, ...]:
    """The tokens in `path`, one per line; blank lines and '#' comments skipped."""
    text = _read(path, "auth token file", pem=False)
    try:
        lines = text.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigurationError(f"auth token file {path}: not UTF-8 text") from None
    tokens = tuple(
        line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
    )
    if not tokens:
        raise ConfigurationError(f"auth token file {path}: no tokens in it")
    for token in tokens:
        if any(ch.isspace() for ch in token) or not token.isprintable() or not token.isascii():
            raise ConfigurationError(
                f"auth token file {path}: a token holds spaces or non-printable characters"
            )
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("auth token file %s is readable by other users: chmod 600 it", path)
    return tokens


def server_credentials(config: SecurityConfig) -> grpc.ServerCredentials | None:
    """TLS (or mutual TLS) credentials from the config; None for plaintext."""
    if not config.tls_cert and not config.tls_key:
        if config.tls_client_ca:
            raise ConfigurationError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (config.tls_cert and config.tls_key):
        raise ConfigurationError("--tls-cert and --tls-key go together")
    cert = _read(config.tls_cert, "TLS certificate")
    key = _read(config.tls_key, "TLS private key")
    client_ca = _read(config.tls_client_ca, "TLS client CA") if config.tls_client_ca else None
    _check_pem(config)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _check_pem(config: SecurityConfig) -> None:
    """Parse the certificate, key and CA now: gRPC accepts any PEM-shaped bytes
    and fails only when the first handshake or bind needs them, deep in a worker."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    except (ssl.SSLError, ValueError):
        raise ConfigurationError(
            f"TLS certificate {config.tls_cert} and key {config.tls_key}: not a valid "
            "certificate chain and matching private key"
        ) from None
    if config.tls_client_ca:
        try:
            context.load_verify_locations(cafile=config.tls_client_ca)
        except (ssl.SSLError, ValueError):
            raise ConfigurationError(
                f"TLS client CA {config.tls_client_ca}: no valid certificate in it"
            ) from None


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(config: SecurityConfig) -> None:
    """Read every security file now, so a bad setting fails before serving (or forking)."""
    server_credentials(config)
    if config.auth_token_file:
        load_tokens(config.auth_token_file)


def bind(server: grpc.aio.Server, config: SecurityConfig, address: str) -> int:
    """Add the server's port, TLS if configured; warn when plaintext leaves loopback."""
    credentials = server_credentials(config)
    if credentials is not None:
        port = server.add_secure_port(address, credentials)
        mutual = " with client certificates required" if config.tls_client_ca else ""
        log.info("TLS on %s%s", address, mutual)
        return port
    if not is_loopback(config.host):
        log.warning(
            "serving PLAINTEXT gRPC on non-loopback address %s: health data and %s cross the"
            " network unencrypted; use --tls-cert and --tls-key",
            config.host,
            "bearer tokens" if config.auth_token_file else "requests",
        )
    return server.add_insecure_port(address)


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of the first `authorization: Bearer <token>` entry, if any."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, token = str(value).strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None
    return None


_REFUSALS = RateLimitedLog(log, "call refused: no valid bearer token")


async def _refuse(requests: Any, context: grpc.aio.ServicerContext) -> None:
    _REFUSALS.event()
    await errors.abort(context, errors.unauthenticated())


# Every refused call, known method or not, unary or streaming, gets this one
# handler: a streaming request is handed over unread, so the refusal comes at
# once (no call waits for a message that may never arrive), is never
# parsed, and looks the same whatever the method, so a caller without a token
# learns nothing about which methods exist or which take a stream.
_DENY = grpc.stream_stream_rpc_method_handler(_refuse)


Wrap = Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """`UNAUTHENTICATED` for every RPC without a known bearer token, except health.

    The refusal goes through `wrap` (the call context every handler has, see
    `server.handlers`), so refused calls are gated and counted like others."""

    def __init__(self, tokens: Iterable[str], wrap: Wrap = lambda path, handler: handler) -> None:
        self._digests = tuple(_digest(token) for token in tokens)
        if not self._digests:
            raise ConfigurationError("bearer-token authentication needs at least one token")
        self._wrap = wrap
        self._refusals: dict[str, grpc.RpcMethodHandler] = {}  # by method_name: bounded

    def _refusal(self, path: str) -> grpc.RpcMethodHandler:
        method = method_name(path)
        refusal = self._refusals.get(method)
        if refusal is None:
            refusal = self._refusals[method] = self._wrap(method, _DENY)
        return refusal

    def authorized(self, metadata: Iterable[tuple[str, Any]] | None) -> bool:
        token = bearer_token(metadata)
        presented = _digest(token if token is not None else "")
        matched = False
        for digest in self._digests:  # every token, always: no early exit
            matched |= hmac.compare_digest(presented, digest)
        return matched and token is not None

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        if handler_call_details.method.startswith(HEALTH_SERVICE_PREFIX):
            return await continuation(handler_call_details)
        if self.authorized(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        return self._refusal(handler_call_details.method)


def build_interceptors(config: SecurityConfig, wrap: Wrap) -> list[grpc.aio.ServerInterceptor]:
    """The access-control interceptors for `config` (none without a token file);
    `wrap` gives a refusal its call context."""
    if not config.auth_token_file:
        return []
    tokens = load_tokens(config.auth_token_file)
    log.info("bearer-token authentication on: %d token(s) loaded", len(tokens))
    return [BearerTokenInterceptor(tokens, wrap)]
