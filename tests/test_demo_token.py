"""The demo page's token (POST /demo/token): minted in the http role from a name and a
group, behind the API key, with the claims the page needs for presence and publishing."""

import json

import pytest
from django.test import Client

from service.tokens import token_verify


def post(body, key=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    response = Client(**headers).post("/demo/token", json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def test_the_token_reads_publishes_and_is_present_in_one_group_as_the_name(settings):
    status, body = post({"name": " Ann ", "group": "room.1", "ttl": 30}, settings.GROUPCAST_API_KEYS[0])
    assert status == 200 and body["expires_in"] == 30
    claims = token_verify(body["token"])
    assert claims.sub == "demo-Ann" and claims.info == {"name": "Ann"}
    assert claims.groups.names == {"room.1"} and claims.publish.names == {"room.1"}
    assert not claims.groups.prefixes and not claims.publish.prefixes


def test_it_needs_the_api_key():
    status, body = post({"name": "Ann", "group": "room.1"})
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "body",
    [
        {"group": "room.1"},
        {"name": "  ", "group": "room.1"},
        {"name": "x" * 61, "group": "room.1"},
        {"name": "Ann", "group": "room.*"},
        {"name": "Ann", "group": "bad group"},
        {"name": "Ann", "group": "room.1", "ttl": 0},
        {"name": "Ann", "group": "room.1", "ttl": 10**9},
    ],
)
def test_bad_requests_are_400(settings, body):
    status, reply = post(body, settings.GROUPCAST_API_KEYS[0])
    assert status == 400 and reply["error"]["message"]
