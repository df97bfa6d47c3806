"""The key layout: on one server the names groupcast has always used (an upgrade keeps its
streams, jobs and traffic); on a Redis Cluster, one slot per group for everything a
script touches with it, one for the fleet and one for the jobs."""

import pytest
from redis.crc import key_slot

from service.storage import keys

CLUSTER_URL = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"


def slot(name):
    return key_slot(name.encode())


def test_names_on_one_server_are_unchanged(settings):
    settings.GROUPCAST_REDIS_PREFIX = "gc"
    assert [keys.stream("news"), keys.fanout_channel("news"), keys.once("news", "api:news:k"),
            keys.presence_processes(), keys.connections(), keys.job("j1"), keys.jobs_due()] == [
        "gc:stream:news", "gc:fanout:0:news", "gc:once:api:news:k",
        "gc:presence", "gc:connections", "gc:job:j1", "gc:jobs:due"]


@pytest.mark.parametrize("group", ["news", "room.1", "a-b_c"])
def test_on_a_cluster_a_groups_keys_and_channel_share_its_slot(settings, group):
    settings.REDIS_URL = CLUSTER_URL
    names = [keys.stream(group), keys.fanout_channel(group), keys.once(group, f"api:{group}:k"),
             keys.members(group), keys.members_info(group), keys.members_here(group, "pod-1")]
    assert {slot(name) for name in names} == {slot(group)}


def test_on_a_cluster_the_fleet_and_the_jobs_have_a_slot_each(settings):
    settings.REDIS_URL = CLUSTER_URL
    fleet = [keys.presence_processes(), keys.presence_counts("p"), keys.member_groups("p"), keys.connections()]
    jobs = [keys.job("j1"), keys.job("j2"), keys.jobs_due(), keys.jobs_queued(), keys.jobs_claim("c")]
    assert len({slot(name) for name in fleet}) == 1 and len({slot(name) for name in jobs}) == 1
    # groups spread: 100 groups land on many slots
    assert len({slot(keys.stream(f"g{n}")) for n in range(100)}) > 90


@pytest.mark.parametrize("url, problem", [
    ("redis+cluster://127.0.0.1", "seed '127.0.0.1' must be host:port"),
    ("redis+cluster://127.0.0.1:7000/2", "database 0 only"),
])
def test_a_malformed_cluster_url_is_named_at_start_up(url, problem):
    from service.storage.urls import url_problem

    assert problem in url_problem(url)


def test_cluster_urls_carry_credentials_and_tls():
    from service.storage.urls import parse_cluster_url

    address = parse_cluster_url("rediss+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001/")
    assert address.seeds == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert (address.username, address.password, address.tls) == ("app", "s@cret", True)
