"""The keys tokens are signed and checked with: the HS256 shared secret, ES256/RS256 keys
from PEM files, and JWKS files; a token's `kid` header picks the key that checks it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)
from jwt import PyJWK, PyJWTError

from stadium.config import ConfigError

__all__ = ["ALGORITHMS", "MIN_SECRET_BYTES", "KeySet", "SigningKey", "VerificationKey",
           "load_signing_key", "load_verification_keys", "reload_verification_keys",
           "secret_bytes", "verification_keys"]

ALGORITHMS = ("HS256", "ES256", "RS256")
"""What a token may be signed with; any other `alg` (and `none`) is refused."""

MIN_SECRET_BYTES = 32
"""RFC 7518 §3.2 wants an HS256 key at least as long as the hash; shorter ones still work
(development secrets) and the services warn about them at start."""


def warn_if_short(secret: str, log: logging.Logger) -> None:
    """The start-up warning of a service signing or checking HS256 with a short secret."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        log.warning("--secret is shorter than %d bytes: fine for development, too weak "
                    "for HS256 in production (RFC 7518)", MIN_SECRET_BYTES)

MIN_RSA_BITS = 2048
MAX_KID = 256

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def secret_bytes(secret: str | bytes) -> bytes:
    """The HS256 key of a secret (UTF-8 for str); ValueError when empty."""
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("token secret must not be empty")
    return key


def _check_kid(kid: str | None, where: str) -> str | None:
    if kid is not None and not (0 < len(kid) <= MAX_KID and kid.isprintable()):
        raise ConfigError(f"{where}: a kid is 1-{MAX_KID} printable characters")
    return kid


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key a service signs tokens with; tokens carry `kid` in their header when set."""

    algorithm: str  # HS256, ES256 or RS256
    key: bytes | PrivateKey
    kid: str | None = None

    @classmethod
    def from_secret(cls, secret: str | bytes, kid: str | None = None) -> SigningKey:
        return cls("HS256", secret_bytes(secret), _check_kid(kid, "kid"))

    def __repr__(self) -> str:  # never the secret or the private key
        return f"SigningKey({self.algorithm}, kid={self.kid!r})"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key tokens are checked with: the secret (HS256) or a public key (ES256, RS256)."""

    algorithm: str
    key: bytes | PublicKey
    kid: str | None = None

    def __repr__(self) -> str:
        return f"VerificationKey({self.algorithm}, kid={self.kid!r})"


class KeySet:
    """Every key a service accepts tokens from. A token with a `kid` is checked with the key
    of that kid only (a kid not here is refused); a token without one with the keys that
    have none, of the token's algorithm. Several kids at once let keys rotate: add the new
    key, move the signer to it, drop the old key once its last tokens have expired."""

    __slots__ = ("by_kid", "unnamed")

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self.by_kid: dict[str, VerificationKey] = {}
        self.unnamed: list[VerificationKey] = []
        for key in keys:
            if key.algorithm not in ALGORITHMS:
                raise ValueError(f"algorithm {key.algorithm} is not one of {ALGORITHMS}")
            if key.kid is None:
                self.unnamed.append(key)
            elif key.kid in self.by_kid:
                raise ConfigError(f"two token keys have the kid {key.kid!r}")
            else:
                self.by_kid[key.kid] = key

    @classmethod
    def from_secret(cls, secret: str | bytes) -> KeySet:
        return cls([VerificationKey("HS256", secret_bytes(secret))])

    def __len__(self) -> int:
        return len(self.by_kid) + len(self.unnamed)

    def __iter__(self) -> Iterator[VerificationKey]:
        yield from self.unnamed
        yield from self.by_kid.values()

    def __repr__(self) -> str:
        return f"KeySet({list(self)!r})"


def _algorithm_of(key: Any, where: str) -> str:
    """ES256 for an EC P-256 key, RS256 for an RSA key of 2048 bits or more."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(f"{where}: an EC key must be on P-256 for ES256, not "
                              f"{key.curve.name}")
        return "ES256"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(f"{where}: an RSA key needs {MIN_RSA_BITS} bits or more, "
                              f"not {key.key_size}")
        return "RS256"
    raise ConfigError(f"{where}: only EC P-256 (ES256) and RSA (RS256) keys are supported")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None


def load_signing_key(path: str, kid: str | None = None) -> SigningKey:
    """A PEM private key (unencrypted PKCS#8 or traditional): EC P-256 signs ES256, RSA
    RS256."""
    data = _read(path, "signing key")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"signing key {path}: not an unencrypted PEM private key") from None
    algorithm = _algorithm_of(key, f"signing key {path}")
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return SigningKey(algorithm, key, _check_kid(kid, f"signing key {path}"))


def _jwks_keys(data: bytes, path: str) -> list[VerificationKey]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise ConfigError(f"JWKS {path}: not valid JSON") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"JWKS {path}: expected {{\"keys\": [...]}}")
    keys = []
    for i, entry in enumerate(entries):
        where = f"JWKS {path}, key {i}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: not a JSON object")
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key published beside the signing keys
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ConfigError(f"{where}: kid must be a string")
        where = f"JWKS {path}, key {kid!r}" if kid is not None else where
        if entry.get("kty") != "oct" and "d" in entry:
            raise ConfigError(f"{where}: holds a private key; give the public JWKS")
        try:
            jwk = PyJWK(entry)
        except PyJWTError as e:
            raise ConfigError(f"{where}: {e}") from None
        if jwk.algorithm_name not in ALGORITHMS:
            raise ConfigError(f"{where}: algorithm {jwk.algorithm_name} is not one of "
                              f"{', '.join(ALGORITHMS)}")
        if jwk.algorithm_name == "HS256":
            key: bytes | PublicKey = bytes(jwk.key)
            if not key:
                raise ConfigError(f"{where}: empty secret")
        else:
            key = jwk.key
            if _algorithm_of(key, where) != jwk.algorithm_name:
                raise ConfigError(f"{where}: alg {jwk.algorithm_name} does not fit the key")
        keys.append(VerificationKey(jwk.algorithm_name, key, _check_kid(kid, where)))
    if not keys:
        raise ConfigError(f"JWKS {path}: no signing keys")
    return keys


def load_verification_keys(spec: str) -> list[VerificationKey]:
    """The keys of one `--token-key`: `KID=PATH` or `PATH` for a PEM public key (without a
    kid it checks tokens that have none), or `PATH` of a JWKS file (its keys name their
    kids; kty `oct` keys are HS256 secrets)."""
    kid, eq, path = spec.partition("=")
    if not eq:
        kid, path = "", spec
    elif not kid:
        raise ConfigError(f"--token-key {spec!r}: expected KID=PATH or PATH")
    data = _read(path, "token key")
    if data.lstrip()[:1] == b"{":
        if kid:
            raise ConfigError(f"--token-key {spec!r}: a JWKS file names its keys' kids itself")
        return _jwks_keys(data, path)
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        hint = " (give the public key)" if b"PRIVATE KEY" in data else ""
        raise ConfigError(f"token key {path}: not a PEM public key or a JWKS file{hint}"
                          ) from None
    algorithm = _algorithm_of(key, f"token key {path}")
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return [VerificationKey(algorithm, key, _check_kid(kid or None, f"token key {path}"))]


def verification_keys(secret: str | None, specs: Sequence[str]) -> KeySet | None:
    """What a service checks tokens with: the secret (HS256, no kid) and every --token-key;
    None when neither is given (the service admits tokens from no one, or everyone)."""
    keys = [VerificationKey("HS256", secret_bytes(secret))] if secret else []
    for spec in specs:
        keys.extend(load_verification_keys(spec))
    return KeySet(keys) if keys else None


def reload_verification_keys(secret: str | None, specs: Sequence[str], old: KeySet | None,
                             log: logging.Logger) -> KeySet | None:
    """`verification_keys` read again from their files (a service does on SIGHUP, so keys
    rotate without a restart); the `old` ones, with an error logged, when a file is missing
    or bad. The same flags give keys or none as at start: a reload never turns checks on
    or off."""
    try:
        keys = verification_keys(secret, specs)
    except ConfigError as e:
        log.error("token keys not reloaded, the ones loaded before stay: %s", e)
        return old
    log.info("token keys reloaded: %s", "none" if keys is None else
             ", ".join(k.kid or f"({k.algorithm}, no kid)" for k in keys))
    return keys
