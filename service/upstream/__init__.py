"""Where groupcast reaches into its upstreams' internals, one module per upstream.

The socket fast path and the worker go below the public APIs of Daphne, Twisted,
autobahn, Channels and channels_redis, the http role below uvicorn's (its error
answers), token checks below PyJWT's (its HMAC key checks). Each such place is here,
citing the upstream version and file it was written against; the versions are pinned
in pyproject.toml and tests/test_upstream.py fails when an installed version moves
away from PINNED, so an upgrade is a deliberate act: re-read the cited code, then
move the pin.
"""

from importlib.metadata import version

# distribution -> the version every override here was checked against
PINNED = {
    "daphne": "4.2.3",
    "twisted": "26.10.0",
    "autobahn": "26.10.2",
    "channels": "4.3.2",
    "channels-redis": "4.3.0",
    "uvicorn": "0.54.0",
    "uvicorn-worker": "0.4.0",
    "pyjwt": "2.15.1",
}


def versions_moved():
    """{distribution: installed version} for each upstream that is not at its pin."""
    return {name: version(name) for name, pinned in PINNED.items() if version(name) != pinned}
