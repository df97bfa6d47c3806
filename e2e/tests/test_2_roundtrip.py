"""Scenario 2: a round trip from outside the cluster.

Token (POST /api/v1/tokens with the chart Secret's API key), subscribe over /ws,
publish (POST /api/v1/publish), receive: once through the e2e NodePort Services and
once through the chart's own Services (kubectl port-forward svc/...).
"""

from client import Api, Subscriber
from conftest import unique


async def round_trip(api, ws_url, label):
    group = unique("s2")
    subscriber = await Subscriber(label, ws_url, api.token([group], sub=label), [group]).start()
    try:
        published = await api.apublish(group, {"hello": "kind", "via": label})
        assert published.status == 200, published
        assert published.body["group"] == group
        await subscriber.wait_for(lambda: subscriber.offsets(group), 15, "the published message")
        (message,) = subscriber.messages
        assert message == {
            "type": "message",
            "group": group,
            "offset": published.body["offset"],
            "data": {"hello": "kind", "via": label},
        }
        return 1, len(subscriber.messages)
    finally:
        await subscriber.stop()


async def test_round_trip_through_node_ports(api, cluster, report):
    sent, received = await round_trip(api, cluster.ws_url, "nodeport")
    report.add("2 round trip (NodePort)", sent=sent, received=received)


async def test_round_trip_through_chart_services(api, cluster, forwards, report):
    http = forwards(f"svc/{cluster.service_name('http')}", 8000)
    socket = forwards(f"svc/{cluster.service_name('socket')}", 8001)
    direct = Api(f"http://127.0.0.1:{http.local_port}", api.api_key)
    sent, received = await round_trip(direct, f"ws://127.0.0.1:{socket.local_port}/ws", "chart-services")
    report.add("2 round trip (chart Services)", sent=sent, received=received)
