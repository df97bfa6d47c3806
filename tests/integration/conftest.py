import pytest

from devstack import Stack, free_port

# Short lifecycles, so the tests can watch leases, presence and drains happen.
STACK_ENV = {
    "GROUPCAST_PRESENCE_TTL": "3",
    "GROUPCAST_JOB_LEASE_SECONDS": "3",
    "GROUPCAST_SEND_QUEUE_BYTES": "65536",
    "GROUPCAST_DRAIN_SECONDS": "1",
    # tests place clients on chosen processes; test_rebalance.py turns it on
    "GROUPCAST_REBALANCE": "false",
}


@pytest.fixture(scope="module")
def stack():
    """Redis, gunicorn, two Daphne socket processes and two runworkers, on loopback."""
    topology = Stack(
        socket_ports=[free_port(), free_port()],
        worker_ports=[free_port(), free_port()],
        env=STACK_ENV,
    )
    yield from running(topology)


def running(topology):
    """A module fixture's body: start `topology`, yield it, stop it. If it does not come
    up, print its processes' logs and stop what did start."""
    try:
        topology.start()
    except Exception:
        for name in topology.processes:
            print(f"--- {name}\n{topology.log(name)}")
        topology.stop()
        raise
    yield topology
    topology.stop()
