"""A socket process serving TLS itself (Daphne's `-e ssl:...` endpoint): WebSocket
upgrades (service/socket/upgrades.py hands them to autobahn through the TLS wrapper) and
plain HTTP (the probes) both work over it."""

import asyncio
import datetime
import json
import ssl
import subprocess
import sys
import urllib.request

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack import ROOT, Stack, free_port, stop_process, wait_until
from tests.integration.clients import api, token
from tests.integration.conftest import STACK_ENV, running

pytestmark = pytest.mark.slow


def self_signed(directory):
    """(key path, certificate path) for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, certificate_path = directory / "key.pem", directory / "certificate.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, certificate_path


def client_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


@pytest.fixture(scope="module")
def stack():
    yield from running(Stack(socket_ports=[free_port()], worker_ports=[free_port()], env=STACK_ENV))


@pytest.fixture(scope="module")
def tls_port(stack, tmp_path_factory):
    """A second socket process of the stack, on a TLS endpoint, once it answers /healthz."""
    key, certificate = self_signed(tmp_path_factory.mktemp("tls"))
    port = free_port()
    log = open(stack.workdir / "socket-tls.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.socket.server", "-v", "0",
         "-e", f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={certificate}",
         "service.asgi:application"],
        env=dict(stack.env, GROUPCAST_ROLE="socket"), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )

    def healthy():
        assert process.poll() is None, (stack.workdir / "socket-tls.log").read_text()
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2,
                                        context=client_context()) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(healthy, 30, "the TLS socket process answering /healthz")
    yield port
    stop_process(process)
    log.close()


async def test_a_client_subscribes_and_receives_over_tls(stack, tls_port):
    url = f"wss://127.0.0.1:{tls_port}/ws?token={token(stack, ['secure'])}"
    async with websockets.connect(url, ssl=client_context(), open_timeout=10) as client:
        await client.send(json.dumps({"type": "subscribe", "group": "secure"}))
        assert json.loads(await asyncio.wait_for(client.recv(), 10))["type"] == "subscribed"
        status, body = api(stack, "POST", "/api/v1/publish", {"group": "secure", "data": {"n": 1}})
        assert status == 200, body
        message = json.loads(await asyncio.wait_for(client.recv(), 10))
        assert message["type"] == "message" and message["data"] == {"n": 1}


def test_the_probes_answer_over_tls(tls_port):
    with urllib.request.urlopen(f"https://127.0.0.1:{tls_port}/readyz", timeout=5,
                                context=client_context()) as response:
        assert response.status == 200


async def test_an_event_stream_subscribes_and_receives_over_tls(stack, tls_port):
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port, ssl=client_context())
    try:
        writer.write(f"GET /sse?token={token(stack, ['streamed'])}&group=streamed HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())

        async def until(line):
            while (await reader.readline()).rstrip(b"\r\n") != line:
                pass

        await asyncio.wait_for(until(b"event: subscribed"), 10)
        status, body = api(stack, "POST", "/api/v1/publish", {"group": "streamed", "data": {"n": 2}})
        assert status == 200, body
        await asyncio.wait_for(until(b"event: message"), 10)

        async def data_line():
            while not (line := await reader.readline()).startswith(b"data: "):
                pass
            return json.loads(line[6:])

        assert (await asyncio.wait_for(data_line(), 10))["data"] == {"n": 2}
    finally:
        writer.close()
