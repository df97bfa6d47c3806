"""PyJWT's decoder with each HMAC secret's key checks made once, not for every token
(PyJWT 2.15.1, jwt/algorithms.py HMACAlgorithm.prepare_key; jwt/api_jwt.py PyJWT._jws).

Before an HMAC secret is used, PyJWT makes sure it is not an asymmetric key in disguise:
it tries the secret as PEM, as an SSH key, as DER (two cryptography loaders) and as a
JWK's JSON. The answer depends on the secret alone, yet it is worked out again on every
decode: ~40% of verifying a token (~17 of ~44 µs) and ~7% of a socket process's CPU in
a reconnect storm (py-spy), where every client brings a token. The secrets are this
deployment's settings, a handful at most, so their answers are kept here. A secret
PyJWT refuses raises its InvalidKeyError on every use, as before (an exception is not
kept).
"""

import functools

import jwt
from jwt.algorithms import HMACAlgorithm


class _KeysCheckedOnce(HMACAlgorithm):
    # a handful of secrets (GROUPCAST_JWT_SECRETS); the bound only guards against misuse
    @functools.lru_cache(maxsize=16)
    def prepare_key(self, key):
        return super().prepare_key(key)


def hmac_decoder(algorithm, hash_alg):
    """A jwt.PyJWT whose `algorithm` (such as "HS256" with HMACAlgorithm.SHA256) checks
    each secret once; every other check of PyJWT's decode is its own."""
    decoder = jwt.PyJWT()
    signatures = decoder._jws  # the PyJWS this PyJWT verifies signatures with
    signatures.unregister_algorithm(algorithm)
    signatures.register_algorithm(algorithm, _KeysCheckedOnce(hash_alg))
    return decoder
