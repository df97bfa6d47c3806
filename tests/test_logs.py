"""Request and connection ids: drawn anew in every process, forked ones included."""

import multiprocessing

from service.logs import REQUEST_ID, new_connection_id, new_request_id


def _draw(queue):
    queue.put((new_request_id(), new_connection_id()))


def test_forked_processes_draw_their_own_ids():
    # gunicorn forks its workers from one loaded application: a generator state copied
    # into each would give every worker the same ids
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_draw, args=(queue,)) for _ in range(3)]
    for child in children:
        child.start()
    drawn = [queue.get(timeout=30) for _ in children] + [(new_request_id(), new_connection_id())]
    for child in children:
        child.join(30)
    assert len(set(drawn)) == len({rid for rid, _ in drawn}) == len({cid for _, cid in drawn}) == 4
    for rid, cid in drawn:
        assert REQUEST_ID.fullmatch(rid) and len(rid) == 32
        assert cid.startswith("c-") and len(cid) == 18
