"""Keycloak-shaped RS256 access tokens for scripts/bench.sh.

    mint_tokens.py --issuer URL --count N --out DIR [--lifetime SECONDS]

Writes to DIR: key.pem (private, 0600), public.pem, jwks.json, openid-configuration (the
discovery document of URL), tokens.txt (N distinct tokens, one per line, distinct `jti`).
Needs PyJWT and cryptography.
"""

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "bench-agent"
AUDIENCE = "bench-api"
# The service-account user of CLIENT_ID, as Keycloak names it: a fixed id, like a real realm's.
SUBJECT = "6c1c6f5e-2f36-4a8e-9d2b-0c1f3a5b7d90"

_key = None
_claims = None
_kid = None


def b64url_uint(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def base_claims(issuer, now, lifetime):
    # The claims of a Keycloak 24 client-credentials access token (service account), with the
    # roles a real realm gives one.
    return {
        "exp": now + lifetime,
        "iat": now,
        "jti": "",
        "iss": issuer,
        "aud": [AUDIENCE, "account"],
        "sub": SUBJECT,
        "typ": "Bearer",
        "azp": CLIENT_ID,
        "acr": "1",
        "allowed-origins": ["/*"],
        "realm_access": {
            "roles": [
                "offline_access",
                "default-roles-bench",
                "uma_authorization",
                "bench-reader",
            ]
        },
        "resource_access": {
            AUDIENCE: {"roles": ["items-reader"]},
            "account": {"roles": ["manage-account", "manage-account-links", "view-profile"]},
        },
        "scope": "profile email",
        "clientHost": "127.0.0.1",
        "email_verified": False,
        "client_id": CLIENT_ID,
        "preferred_username": "service-account-" + CLIENT_ID,
        "clientAddress": "127.0.0.1",
    }


def _init(pem, claims, kid):
    global _key, _claims, _kid
    _key = serialization.load_pem_private_key(pem, password=None)
    _claims = claims
    _kid = kid


def _sign(n):
    claims = dict(_claims)
    # Keycloak's jti: "onrtac:" (client credentials) + a UUID.
    claims["jti"] = "onrtac:" + str(uuid.UUID(int=(uuid.uuid4().int & ~0xFFFFFFFF) | n))
    return jwt.encode(claims, _key, algorithm="RS256", headers={"kid": _kid, "typ": "JWT"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lifetime", type=int, default=6 * 3600)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key()
    nums = pub.public_numbers()
    # Keycloak's kid: a base64url SHA-256 over the key, 43 characters.
    kid = base64.urlsafe_b64encode(hashlib.sha256(pem).digest()).rstrip(b"=").decode()
    path = os.path.join(args.out, "key.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with open(os.path.join(args.out, "public.pem"), "wb") as f:
        f.write(
            pub.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    jwks = {
        "keys": [
            {
                "kid": kid,
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "n": b64url_uint(nums.n),
                "e": b64url_uint(nums.e),
            }
        ]
    }
    with open(os.path.join(args.out, "jwks.json"), "w") as f:
        json.dump(jwks, f)
    oidc = args.issuer + "/protocol/openid-connect"
    discovery = {
        "issuer": args.issuer,
        "authorization_endpoint": oidc + "/auth",
        "token_endpoint": oidc + "/token",
        "introspection_endpoint": oidc + "/token/introspect",
        "jwks_uri": oidc + "/certs",
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }
    with open(os.path.join(args.out, "openid-configuration"), "w") as f:
        json.dump(discovery, f)

    claims = base_claims(args.issuer, int(time.time()), args.lifetime)
    procs = os.cpu_count() or 1
    with multiprocessing.Pool(procs, initializer=_init, initargs=(pem, claims, kid)) as pool:
        with open(os.path.join(args.out, "tokens.txt"), "w") as f:
            for tok in pool.imap(_sign, range(args.count), chunksize=500):
                f.write(tok + "\n")


if __name__ == "__main__":
    main()
