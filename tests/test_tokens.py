import base64
import json
import random
import time

import jwt
import pytest
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import _BASE64URL_ALPHABET, PyJWS

from service.api.api_keys import api_key_valid
from service.tokens import TokenError, token_issue, token_verify
from service.upstream.pyjwt import _decode_segment


def test_issued_token_carries_sub_groups_and_exp(settings):
    token = token_issue(sub="user-1", groups=["news", "sports"], ttl=60)
    payload = jwt.decode(token, settings.GROUPCAST_JWT_SECRETS[0], algorithms=["HS256"])
    assert payload["sub"] == "user-1"
    assert payload["groups"] == ["news", "sports"]
    assert payload["exp"] - payload["iat"] == 60
    claims = token_verify(token)
    assert claims.sub == "user-1" and claims.groups.names == {"news", "sports"}


def test_expired_token_is_refused(settings):
    settings.GROUPCAST_JWT_LEEWAY = 0
    token = token_issue(sub="u", groups=["news"], ttl=1, now=time.time() - 10)
    with pytest.raises(TokenError, match="expired"):
        token_verify(token)


def test_leeway_tolerates_small_clock_skew(settings):
    settings.GROUPCAST_JWT_LEEWAY = 30
    token = token_issue(sub="u", groups=["news"], ttl=1, now=time.time() - 10)
    assert token_verify(token).sub == "u"


def test_token_from_the_future_is_not_yet_valid(settings):
    settings.GROUPCAST_JWT_LEEWAY = 5
    token = token_issue(sub="u", groups=["news"], ttl=600, now=time.time() + 120)
    with pytest.raises(TokenError, match="not yet valid"):
        token_verify(token)


def test_wrong_signature_is_refused():
    token = jwt.encode({"sub": "u", "groups": [], "exp": time.time() + 60}, "x" * 40, algorithm="HS256")
    with pytest.raises(TokenError, match="bad signature"):
        token_verify(token)


def test_every_configured_secret_is_accepted_for_rotation(settings):
    old = settings.GROUPCAST_JWT_SECRETS[1]
    token = jwt.encode({"sub": "u", "groups": ["a"], "exp": time.time() + 60}, old, algorithm="HS256")
    assert token_verify(token).groups.names == {"a"}


def test_each_secret_is_checked_once_not_per_token(settings, monkeypatch):
    # PyJWT checks that an HMAC secret is no asymmetric key (PEM, SSH, DER, JWK) on every
    # decode; service/upstream/pyjwt.py keeps the answer per secret
    secret = f"checked-once-{time.time_ns()}".ljust(40, "x")  # not seen by any test before
    settings.GROUPCAST_JWT_SECRETS = [secret]
    tokens = [jwt.encode({"sub": f"u{n}", "exp": time.time() + 60}, secret, algorithm="HS256") for n in range(5)]
    checked = []
    prepare_key = HMACAlgorithm.prepare_key
    monkeypatch.setattr(HMACAlgorithm, "prepare_key", lambda self, key: checked.append(key) or prepare_key(self, key))
    assert [token_verify(token).sub for token in tokens] == ["u0", "u1", "u2", "u3", "u4"]
    assert checked == [secret]


def test_a_secret_pyjwt_refuses_is_refused_on_every_token(settings):
    secret = "ssh-ed25519 " + "x" * 40  # what PyJWT takes for an asymmetric key
    token = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64({"sub": "u", "exp": time.time() + 60}) + ".c2ln"
    settings.GROUPCAST_JWT_SECRETS = [secret]
    for _ in range(2):  # an exception is not kept as the secret's answer
        with pytest.raises(jwt.InvalidKeyError, match="asymmetric key"):
            token_verify(token)


def test_parts_are_decoded_and_refused_as_pyjwt_does():
    # service/upstream/pyjwt.py's copy of PyJWT's part decoder against the original, on
    # valid parts, padded ones, non-canonical ones and ones holding other bytes
    draw = random.Random(7)
    alphabet = _BASE64URL_ALPHABET.decode()
    cases = {b"", b"=", b"!!!!", b"QQ", b"QR", b"QQ==", b"QQ=", b"QQ===", b"Q", b"QUJD", b"QU=J"}
    for _ in range(5000):
        part = "".join(draw.choice(alphabet) for _ in range(draw.randrange(12)))
        if draw.random() < 0.5:
            spot = draw.randrange(len(part) + 1)
            part = part[:spot] + draw.choice("!+/ .=\x00\x7f\xe9") + part[spot:]
        cases.add(part.encode() + b"=" * draw.choice((0, 0, 1, 2, 3)))
    for part in cases:
        assert _outcome(_decode_segment, part) == _outcome(PyJWS._decode_base64url_segment, part), part


def _outcome(decode, part):
    try:
        return decode(part, "payload")
    except jwt.DecodeError as error:
        return str(error)


def _b64(part):
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused():
    token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"sub": "u", "groups": ["news"], "exp": time.time() + 60}) + "."
    with pytest.raises(TokenError):
        token_verify(token)


def test_algorithm_swap_is_refused(settings):
    token = jwt.encode(
        {"sub": "u", "groups": ["news"], "exp": time.time() + 60},
        settings.GROUPCAST_JWT_SECRETS[0],
        algorithm="HS512",
    )
    with pytest.raises(TokenError):
        token_verify(token)


@pytest.mark.parametrize(
    "payload",
    [
        {"sub": "u", "groups": ["news"]},  # no exp
        {"groups": ["news"], "exp": 4102444800},  # no sub
        {"sub": "u", "groups": "news", "exp": 4102444800},  # groups not a list
        {"sub": "u", "groups": ["no spaces"], "exp": 4102444800},
        {"sub": "", "groups": ["news"], "exp": "FUTURE"},  # empty sub
        {"sub": "u", "groups": ["news"], "exp": 10**30},  # for ever
        {"sub": "u", "groups": ["news"], "exp": "FUTURE_STRING"},  # exp as a string
    ],
)
def test_malformed_claims_are_refused(settings, payload):
    soon = int(time.time()) + 60
    payload = {**payload, "exp": {"FUTURE": soon, "FUTURE_STRING": str(soon)}.get(payload.get("exp"), payload.get("exp"))}
    payload = {k: v for k, v in payload.items() if v is not None}
    token = jwt.encode(payload, settings.GROUPCAST_JWT_SECRETS[0], algorithm="HS256")
    with pytest.raises(TokenError):
        token_verify(token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 5000])
def test_garbage_is_refused(token):
    with pytest.raises(TokenError):
        token_verify(token)


def test_api_keys_accept_each_configured_key_only(settings):
    first, second = settings.GROUPCAST_API_KEYS
    assert api_key_valid(first) and api_key_valid(second)
    assert not api_key_valid("")
    assert not api_key_valid(first[:-1])
    assert not api_key_valid(first + "x")
    assert not api_key_valid(None)


def test_a_token_living_longer_than_the_deployment_issues_is_refused(settings):
    settings.GROUPCAST_TOKEN_MAX_TTL = 3600
    assert token_verify(token_issue(sub="u", groups=["news"], ttl=3600)).sub == "u"
    with pytest.raises(TokenError, match="GROUPCAST_TOKEN_MAX_TTL"):
        token_verify(token_issue(sub="u", groups=["news"], ttl=3600 + 120))
