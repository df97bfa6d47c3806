"""PyJWT's decoder, with two of its checks made cheaper and no weaker (PyJWT 2.15.1,
jwt/algorithms.py HMACAlgorithm.prepare_key; jwt/api_jws.py
PyJWS._decode_base64url_segment; jwt/api_jwt.py PyJWT._jws).

Every socket connect verifies a token, so a reconnect storm is, for a good part, PyJWT.

Before an HMAC secret is used, PyJWT makes sure it is not an asymmetric key in disguise:
it tries the secret as PEM, as an SSH key, as DER (two cryptography loaders) and as a
JWK's JSON. The answer depends on the secret alone, yet it is worked out again on every
decode: ~40% of verifying a token (~17 of ~44 µs) and ~7% of a socket process's CPU in
a reconnect storm (py-spy), where every client brings a token. The secrets are this
deployment's settings, a handful at most, so their answers are kept here. A secret
PyJWT refuses raises its InvalidKeyError on every use, as before (an exception is not
kept).

Each of a token's three parts is checked to hold base64url characters only, by a Python
generator over its every byte: ~35% of what is left of a decode (~9 of ~27 µs).
`_decode_segment` is PyJWT's function with that test done by `bytes.translate`, the
same answer in C; tests/test_tokens.py holds it to PyJWT's own on valid and invalid
parts.
"""

import binascii
import functools

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import _BASE64URL_ALPHABET
from jwt.exceptions import DecodeError
from jwt.utils import base64url_decode, base64url_encode


class _KeysCheckedOnce(HMACAlgorithm):
    # a handful of secrets (GROUPCAST_JWT_SECRETS); the bound only guards against misuse
    @functools.lru_cache(maxsize=16)
    def prepare_key(self, key):
        return super().prepare_key(key)


def hmac_decoder(algorithm, hash_alg):
    """A jwt.PyJWT whose `algorithm` (such as "HS256" with HMACAlgorithm.SHA256) checks
    each secret once and whose parts' alphabet test runs in C; every other check of
    PyJWT's decode is its own."""
    decoder = jwt.PyJWT()
    signatures = decoder._jws  # the PyJWS this PyJWT verifies signatures with
    signatures.unregister_algorithm(algorithm)
    signatures.register_algorithm(algorithm, _KeysCheckedOnce(hash_alg))
    signatures._decode_base64url_segment = _decode_segment
    return decoder


def _decode_segment(segment, name):
    """PyJWS._decode_base64url_segment, line for line, but for the alphabet test."""
    padding = 0
    stripped = segment
    while stripped.endswith(b"="):
        stripped = stripped[:-1]
        padding += 1
        if padding > 2:
            raise DecodeError(f"Invalid {name} padding")

    if padding and len(segment) % 4 != 0:
        raise DecodeError(f"Invalid {name} padding")

    # what is left once every alphabet byte is deleted: nothing, for a valid part
    if len(stripped) % 4 == 1 or stripped.translate(None, _BASE64URL_ALPHABET):
        raise DecodeError(f"Invalid {name} padding")

    try:
        decoded = base64url_decode(stripped)
    except (TypeError, binascii.Error) as err:
        raise DecodeError(f"Invalid {name} padding") from err

    if base64url_encode(decoded) != stripped:
        raise DecodeError(f"Invalid {name} padding")

    return decoded
