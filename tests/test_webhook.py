"""Webhook deliveries: signed as Standard Webhooks specifies, recorded as jobs, and what
each answer of the receiver does to the job (a real HTTP receiver, a real Redis)."""

import base64
import json
import time

import pytest
from prometheus_client import REGISTRY

from devstack import free_port
from service.signing import signature, signed_headers
from service.storage import jobs as records
from service.storage import keys
from service.storage.clients import make_async
from service.worker import jobs, webhook
from tests.http_endpoint import Endpoint
from tests.standard_webhooks import new_secret, verify

# The specification's published example (its reference libraries test against it).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def key_of(secret):
    return base64.b64decode(secret.removeprefix("whsec_"))


def test_the_signature_is_the_specifications_example():
    assert signature(key_of(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    # and the tests' own verifier, written from the specification, accepts it
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)
    with pytest.raises(AssertionError):
        verify(SPEC_SECRET, headers, SPEC_BODY + b" ", now=SPEC_TIMESTAMP)


def test_every_secret_signs_the_first_first(settings):
    current, old = new_secret(), new_secret()
    settings.GROUPCAST_WEBHOOK_SECRETS = [key_of(current), key_of(old)]
    headers = signed_headers(b'{"events":[]}', "msg_1")
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(entry.startswith("v1,") for entry in entries)
    assert entries[0] == signature(key_of(current), "msg_1", int(headers["webhook-timestamp"]), b'{"events":[]}')
    for secret in (current, old):  # a receiver holding either one accepts it
        verify(secret, headers, b'{"events":[]}')
    with pytest.raises(AssertionError):
        verify(new_secret(), headers, b'{"events":[]}')


class Receiver:
    """Answers every POST with the next status in `statuses` (the last one once they run out)."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests = []
        self.endpoint = Endpoint("/hooks", self.answer)
        self.url = self.endpoint.url

    def answer(self, request):
        self.requests.append((request.headers, request.body))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return (status, {"Location": "/elsewhere"}) if 300 <= status < 400 else status


@pytest.fixture
def receiver(settings):
    made = []
    secret = new_secret()
    settings.GROUPCAST_WEBHOOK_SECRETS = [key_of(secret)]

    def make(*statuses):
        made.append(Receiver(statuses))
        settings.GROUPCAST_WEBHOOK_URL = made[-1].url
        made[-1].secret = secret
        return made[-1]

    yield make
    for each in made:
        each.endpoint.close()


@pytest.fixture
async def client(redis_url):
    client = make_async(redis_url)
    yield client
    await client.aclose()


EVENTS = [{"event": "connect", "sub": "user-1", "at": 1.5}]


async def record_batch(client):
    job_id = await records.webhook_job_create(client, body=webhook.webhook_body(EVENTS), events=len(EVENTS))
    assert await records.jobs_due(client) == [job_id]
    return job_id


def counted(outcome):
    return REGISTRY.get_sample_value("groupcast_webhook_deliveries_total", {"outcome": outcome}) or 0


async def test_a_batch_is_recorded_then_delivered_signed(client, receiver, sync_redis):
    hook = receiver(204)
    job_id = await record_batch(client)
    delivered = counted("delivered")
    assert await jobs.job_run(client, job_id) == "done"
    [(headers, body)] = hook.requests
    assert json.loads(body) == {"events": EVENTS}
    assert headers["webhook-id"] == f"msg_{job_id}" and headers["content-type"] == "application/json"
    verify(hook.secret, headers, body)
    assert counted("delivered") == delivered + 1
    record = sync_redis.hgetall(keys.job(job_id))
    assert record[b"status"] == b"done" and record[b"kind"] == b"webhook"
    assert 0 < sync_redis.ttl(keys.job(job_id)) <= records.keep_seconds("webhook")
    # a webhook delivery is not one of the API's jobs
    assert records.job_get(job_id) is None


@pytest.mark.parametrize("status", [500, 503, 408, 429, 302])
async def test_failures_are_retried_later_with_the_same_id(client, receiver, sync_redis, status):
    hook = receiver(status, 200)
    job_id = await record_batch(client)
    before = time.time()
    assert await jobs.job_run(client, job_id) == "retried"
    record = sync_redis.hgetall(keys.job(job_id))
    assert record[b"status"] == b"queued" and float(record[b"run_at"]) >= before + 2  # backoff
    # the next run, once due, delivers it under the same id
    sync_redis.zadd(keys.jobs_due(), {keys.job(job_id): 0})
    assert await records.jobs_due(client) == [job_id]
    assert await jobs.job_run(client, job_id) == "done"
    assert [h["webhook-id"] for h, _ in hook.requests] == [f"msg_{job_id}"] * 2
    for headers, body in hook.requests:
        verify(hook.secret, headers, body)


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_a_refusal_is_final(client, receiver, sync_redis, status):
    hook = receiver(status)
    job_id = await record_batch(client)
    rejected = counted("rejected")
    assert await jobs.job_run(client, job_id) == "rejected"
    assert len(hook.requests) == 1 and counted("rejected") == rejected + 1
    record = sync_redis.hgetall(keys.job(job_id))
    assert record[b"status"] == b"failed" and record[b"attempts"] == b"1"
    assert str(status).encode() in record[b"error"]
    assert await records.jobs_due(client) == []


async def test_a_receiver_down_is_retried_then_given_up(client, receiver, settings, sync_redis):
    settings.GROUPCAST_JOB_MAX_ATTEMPTS = 2
    settings.GROUPCAST_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/nobody"
    job_id = await record_batch(client)
    failed = counted("failed")
    assert await jobs.job_run(client, job_id) == "retried"
    sync_redis.zadd(keys.jobs_due(), {keys.job(job_id): 0})
    await records.jobs_due(client)
    assert await jobs.job_run(client, job_id) == "failed"
    assert counted("failed") == failed + 1
    assert sync_redis.hget(keys.job(job_id), "status") == b"failed"
