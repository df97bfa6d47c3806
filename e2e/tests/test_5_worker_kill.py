"""Scenario 5: a worker pod killed mid-job.

A bulk job (POST /api/v1/jobs, many groups, a `rate` so it takes ~20 s) starts on the only
worker; a second worker is added, then the first is force-deleted. Another worker takes the
job over (the dying one hands it back on SIGTERM, or its lease runs out) and finishes it;
each group gets the message exactly once.
"""

import asyncio
import time

from client import Subscriber
from conftest import unique

GROUPS = 40
RATE = 2  # publishes per second: 40 groups take ~20 s


async def job_status(api, job_id):
    answer = await asyncio.to_thread(api.request, "GET", f"/api/v1/jobs/{job_id}")
    assert answer.status == 200, answer
    return answer.body


async def wait_job(api, job_id, predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate(status := await job_status(api, job_id)):
        assert time.monotonic() < deadline, f"job {job_id}: no {what} after {timeout} s: {status}"
        await asyncio.sleep(0.5)
    return status


async def test_worker_killed_mid_job(api, cluster, report):
    deployment = cluster.deployment_name("worker")
    (first_worker,) = await asyncio.to_thread(cluster.wait_pods, "worker", 1)
    prefix = unique("s5")
    groups = [f"{prefix}.{i}" for i in range(GROUPS)]
    subscriber = await Subscriber("s5", cluster.ws_url, api.token(groups, sub="jobs"), groups).start(timeout=30)
    try:
        created = await asyncio.to_thread(
            api.request, "POST", "/api/v1/jobs", {"groups": groups, "data": {"job": prefix}, "rate": RATE}
        )
        assert created.status == 202, created
        job_id = created.body["job"]
        await wait_job(api, job_id, lambda s: s["status"] == "running" and s["published"] >= 4, 60,
                                 "progress")

        await asyncio.to_thread(cluster.kubectl, "scale", f"deployment/{deployment}", "--replicas=2")
        await asyncio.to_thread(cluster.wait_pods, "worker", 2)
        at_kill = await job_status(api, job_id)
        assert at_kill["status"] == "running" and at_kill["published"] < GROUPS, f"job ended before the kill: {at_kill}"
        # GET /jobs/<id> names the process running it as <host>-<pid>; the host is the pod
        owner = at_kill.get("worker")
        if owner is not None:
            assert owner.startswith(first_worker), f"job runs on {owner}, not on {first_worker}"
        await asyncio.to_thread(cluster.kubectl, "delete", "pod", first_worker, "--grace-period=0", "--force")

        def taken_over(status):
            if status["status"] in ("done", "failed"):
                return True
            return status["status"] == "running" and status.get("worker") and not status["worker"].startswith(first_worker)

        takeover = await wait_job(api, job_id, taken_over, 120, "takeover by another worker")
        done = await wait_job(api, job_id, lambda s: s["status"] in ("done", "failed"), 240, "end")
        assert done["status"] == "done", done
        if owner is not None:
            assert takeover["status"] == "running", f"finished by the killed worker: {takeover}"
        else:  # an image without `worker` in the job status: the takeover shows in the attempts
            assert done["attempts"] >= 2, f"the job was not taken over: {done}"
        # a fence after the job in every group: once it is in, any duplicate would be too
        fences = {}
        for group in groups:
            fence = await api.apublish(group, {"fence": True})
            assert fence.status == 200, fence
            fences[group] = fence.body["offset"]
        await subscriber.wait_for(lambda: all(fences[g] in subscriber.offsets(g) for g in groups), 30,
                                  "the fence in every group")
        job_messages = {g: [m for m in subscriber.messages if m["group"] == g and m["data"] == {"job": prefix}]
                        for g in groups}
        wrong = {g: len(found) for g, found in job_messages.items() if len(found) != 1}
        assert not wrong, f"groups without exactly one job message: {wrong}"
        report.add(
            "5 worker killed mid-job",
            groups=GROUPS,
            rate=RATE,
            published_before_kill=at_kill["published"],
            attempts=done["attempts"],
            taken_over_by=takeover.get("worker"),
            received=sum(len(found) for found in job_messages.values()),
            killed=first_worker,
        )
    finally:
        await subscriber.stop()
        await asyncio.to_thread(cluster.kubectl, "scale", f"deployment/{deployment}", "--replicas=1")
