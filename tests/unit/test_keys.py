"""Unit tests for `stadium.keys`: the key files a service is given (PEM public and private
keys, JWKS) and every way one is refused at start."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from stadium.config import ConfigError
from stadium.keys import (
    KeySet,
    SigningKey,
    VerificationKey,
    load_signing_key,
    load_verification_keys,
    verification_keys,
)

EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC384_KEY = ec.generate_private_key(ec.SECP384R1())
RSA1024_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def write(tmp_path: Path, name: str, data: bytes | str | dict[str, Any]) -> str:
    path = tmp_path / name
    if isinstance(data, dict):
        data = json.dumps(data)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def test_pem_public_keys_with_and_without_kid(tmp_path: Path) -> None:
    ec_path = write(tmp_path, "ec.pem", public_pem(EC_KEY))
    rsa_path = write(tmp_path, "rsa.pem", public_pem(RSA_KEY))
    [es] = load_verification_keys(f"es-1={ec_path}")
    [rs] = load_verification_keys(rsa_path)
    assert (es.algorithm, es.kid) == ("ES256", "es-1")
    assert (rs.algorithm, rs.kid) == ("RS256", None)
    assert isinstance(es.key, ec.EllipticCurvePublicKey)


def test_jwks_file(tmp_path: Path) -> None:
    secret = b"a secret of thirty-two bytes or more"
    doc = {"keys": [
        {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "es", "use": "sig"},
        {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "rs",
         "alg": "RS256"},
        {"kty": "oct", "kid": "hs", "k": base64.urlsafe_b64encode(secret).decode().rstrip("=")},
        {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "enc",
         "use": "enc"},
    ]}
    keys = load_verification_keys(write(tmp_path, "jwks.json", doc))
    assert [(k.algorithm, k.kid) for k in keys] == [("ES256", "es"), ("RS256", "rs"),
                                                    ("HS256", "hs")]
    assert keys[2].key == secret


def test_verification_keys_from_the_settings(tmp_path: Path) -> None:
    assert verification_keys(None, []) is None
    only_secret = verification_keys("s3cret", [])
    assert only_secret is not None and [k.algorithm for k in only_secret] == ["HS256"]
    both = verification_keys("s3cret", [f"a={write(tmp_path, 'a.pem', public_pem(EC_KEY))}"])
    assert both is not None and len(both) == 2
    assert set(both.by_kid) == {"a"} and [k.algorithm for k in both.unnamed] == ["HS256"]


def test_signing_keys(tmp_path: Path) -> None:
    es = load_signing_key(write(tmp_path, "ec.key", private_pem(EC_KEY)), "es-2")
    rs = load_signing_key(write(tmp_path, "rsa.key", private_pem(RSA_KEY)))
    assert (es.algorithm, es.kid, rs.algorithm, rs.kid) == ("ES256", "es-2", "RS256", None)
    hs = SigningKey.from_secret("s3cret", "hs-1")
    assert (hs.algorithm, hs.key, hs.kid) == ("HS256", b"s3cret", "hs-1")
    assert "s3cret" not in repr(hs) and "s3cret" not in repr(KeySet.from_secret("s3cret"))
    with pytest.raises(ValueError):
        SigningKey.from_secret("")


@pytest.mark.parametrize("case, message", [
    ("missing", "No such file"),
    ("private key as public", "give the public key"),
    ("garbage", "not a PEM public key or a JWKS file"),
    ("P-384", "P-256"),
    ("RSA 1024", "2048 bits"),
    ("Ed25519", "only EC P-256"),
    ("kid on a JWKS", "names its keys' kids itself"),
    ("empty kid", "KID=PATH"),
    ("JWKS not JSON", "not valid JSON"),
    ("JWKS without keys", "expected"),
    ("JWKS with a private key", "holds a private key"),
    ("JWKS of another algorithm", "not one of"),
    ("JWKS with nothing to sign", "no signing keys"),
    ("JWKS with a bad key", "JWKS"),
])
def test_bad_token_key_files_stop_the_service(tmp_path: Path, case: str, message: str) -> None:
    ec_jwk = {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "k"}
    specs: dict[str, Callable[[], str]] = {
        "missing": lambda: str(tmp_path / "nope.pem"),
        "private key as public": lambda: write(tmp_path, "k.pem", private_pem(EC_KEY)),
        "garbage": lambda: write(tmp_path, "k.pem", b"-----BEGIN NONSENSE-----\n"),
        "P-384": lambda: write(tmp_path, "k.pem", public_pem(EC384_KEY)),
        "RSA 1024": lambda: write(tmp_path, "k.pem", public_pem(RSA1024_KEY)),
        "Ed25519": lambda: write(tmp_path, "k.pem",
                                 public_pem(ed25519.Ed25519PrivateKey.generate())),
        "kid on a JWKS": lambda: "k=" + write(tmp_path, "k.json", {"keys": [ec_jwk]}),
        "empty kid": lambda: "=" + write(tmp_path, "k.pem", public_pem(EC_KEY)),
        "JWKS not JSON": lambda: write(tmp_path, "k.json", "{nope"),
        "JWKS without keys": lambda: write(tmp_path, "k.json", {"key": []}),
        "JWKS with a private key": lambda: write(tmp_path, "k.json", {"keys": [
            ECAlgorithm.to_jwk(EC_KEY, as_dict=True)]}),
        "JWKS of another algorithm": lambda: write(tmp_path, "k.json", {"keys": [
            {**ec_jwk, "alg": "ES384", **ECAlgorithm.to_jwk(EC384_KEY.public_key(),
                                                            as_dict=True)}]}),
        "JWKS with nothing to sign": lambda: write(tmp_path, "k.json", {"keys": [
            {**ec_jwk, "use": "enc"}]}),
        "JWKS with a bad key": lambda: write(tmp_path, "k.json",
                                             {"keys": [{"kty": "EC", "x": "AA"}]}),
    }
    spec = specs[case]()  # one file per case
    with pytest.raises(ConfigError, match=message):
        load_verification_keys(spec)


def test_bad_signing_key_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_signing_key(str(tmp_path / "nope.key"))
    with pytest.raises(ConfigError, match="unencrypted PEM private key"):
        load_signing_key(write(tmp_path, "pub.pem", public_pem(EC_KEY)))
    with pytest.raises(ConfigError, match="unencrypted PEM private key"):
        load_signing_key(write(tmp_path, "enc.key", private_pem(EC_KEY, b"pw")))
    with pytest.raises(ConfigError, match="P-256"):
        load_signing_key(write(tmp_path, "384.key",
                               private_pem(ec.generate_private_key(ec.SECP384R1()))))
    with pytest.raises(ConfigError, match="printable"):
        load_signing_key(write(tmp_path, "ec.key", private_pem(EC_KEY)), "bad\nkid")


def test_a_kid_names_one_key() -> None:
    with pytest.raises(ConfigError, match="'k'"):
        KeySet([VerificationKey("ES256", EC_KEY.public_key(), "k"),
                VerificationKey("RS256", RSA_KEY.public_key(), "k")])
    with pytest.raises(ValueError):
        KeySet([VerificationKey("HS512", b"x" * 64)])
