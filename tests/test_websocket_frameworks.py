"""Websocket frameworks served unchanged by `lichen --gevent` (the standard
library monkey-patched, the applications of tests/apps/wsapps.py):

- Flask-Sock: simple-websocket takes the connection over through
  environ['gunicorn.socket'] and answers the handshake itself; lichen must
  send nothing on that connection (no second handshake, no response after
  the view returns). Clients: websocket-client, websockets and a raw
  socket that sees every byte.
- Flask-SocketIO (python-socketio / python-engineio, async_mode='gevent'):
  events both ways, an acknowledgement, a broadcast to two clients, over
  long-polling and over websocket, with python-socketio's own client.
- gevent-websocket's style (examples/chat's): a Flask view that uses
  environ['wsgi.websocket'] and then returns a response, which
  gevent-websocket ignores.

Each runs twice: with gevent-websocket importable (python-engineio then uses
lichen's environ['wsgi.websocket']) and with it hidden from the server
(python-engineio falls back to simple-websocket over the socket takeover)."""

import base64
import hashlib
import json
import os
import socket
import struct
import time

import pytest

from helpers_cli import APPS, request
from ws_helpers import REFERENCE, gevent_server

pytest.importorskip("gevent")
pytest.importorskip("flask_sock")
pytest.importorskip("flask_socketio")
socketio = pytest.importorskip("socketio")
websocket = pytest.importorskip("websocket")  # websocket-client
pytest.importorskip("websockets")
from websockets.sync.client import connect as websockets_connect  # noqa: E402

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0
GEVENT_WEBSOCKET = [pytest.param(False, id="with-gevent-websocket"),
                    pytest.param(True, id="without-gevent-websocket")]


def _clean_stop(proc):
    assert proc.stop() == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "[ERROR]" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module", params=GEVENT_WEBSOCKET)
def sock_server(request):
    proc = gevent_server("wsapps:sock_app", chdir=APPS,
                         hide_gevent_websocket=request.param,
                         reference_handler=False)
    try:
        yield proc
        _clean_stop(proc)
    finally:
        proc.kill()


@pytest.fixture(scope="module", params=GEVENT_WEBSOCKET)
def sio_server(request):
    proc = gevent_server("wsapps:sio_app", chdir=APPS,
                         hide_gevent_websocket=request.param)
    proc.hidden = request.param
    try:
        yield proc
        _clean_stop(proc)
    finally:
        proc.kill()


def _ws_url(proc, path):
    return proc.urls[0].replace("http://", "ws://") + path


# -- a raw client: every byte the server sends ---------------------------------

def _frame(opcode, payload, fin=True):
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _parse_frames(data):
    """Server frames (unmasked) -> [(fin, opcode, payload)]; asserts the
    bytes are frames and nothing else."""
    frames, i = [], 0
    while i < len(data):
        assert len(data) - i >= 2, ("truncated frame", data[i:])
        b0, b1 = data[i], data[i + 1]
        assert not b1 & 0x80, ("a masked server frame", data[i:i + 16])
        assert not b0 & 0x70, ("reserved bits set", data[i:i + 16])
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
        assert len(data) - i >= n, ("truncated payload", data[i - 2:i + 16])
        frames.append((bool(b0 & 0x80), b0 & 0x0F, data[i:i + n]))
        i += n
    return frames


def _raw_handshake(port, path):
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (path, port, key)).encode())
    return s, key


def _recv_until_eof(s, limit=5.0):
    data, deadline = b"", time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            return data, True
        data += chunk
    return data, False


# -- (a) Flask-Sock -----------------------------------------------------------

def test_flask_sock_echo_with_websocket_client(sock_server):
    ws = websocket.create_connection(_ws_url(sock_server, "/echo"),
                                     timeout=TIMEOUT)
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send("héllo ✓ 🌿")
        assert ws.recv() == "héllo ✓ 🌿"
        ws.send_binary(b"\x00\xff\x80binary")
        opcode, data = ws.recv_data()
        assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY,
                                  b"\x00\xff\x80binary")
        big = "x" * 200_000 + "end"
        ws.send(big)
        assert ws.recv() == big
        for i in range(50):
            ws.send("m%d" % i)
        assert [ws.recv() for _ in range(50)] == ["m%d" % i
                                                  for i in range(50)]
    finally:
        ws.close()
    # plain HTTP still answered beside it
    resp = request(sock_server.urls[0], path="/")
    assert (resp.status, resp.body) == (200,
                                        b"plain HTTP beside the websocket\n")


def test_flask_sock_echo_with_websockets(sock_server):
    with websockets_connect(_ws_url(sock_server, "/echo"),
                            open_timeout=TIMEOUT,
                            close_timeout=TIMEOUT) as ws:
        assert ws.response.status_code == 101
        ws.send("from websockets")
        assert ws.recv(timeout=TIMEOUT) == "from websockets"
        ws.send(b"\x01\x02\x03")
        assert ws.recv(timeout=TIMEOUT) == b"\x01\x02\x03"
        ws.ping(b"are you there").wait(TIMEOUT)
    assert ws.close_code == 1000


def test_flask_sock_handshake_sent_exactly_once(sock_server):
    """Every byte the server sends: one 101 head, then websocket frames,
    then the end of the connection; nothing from lichen (no second 101, no
    500 or 200 after the view returns)."""
    s, key = _raw_handshake(sock_server.port, "/echo")
    try:
        data = b""
        while b"\r\n\r\n" not in data:  # a client waits for the 101
            chunk = s.recv(65536)
            assert chunk, ("closed during the handshake", data)
            data += chunk
        s.sendall(_frame(0x1, b"one"))
        time.sleep(0.2)
        s.sendall(_frame(0x1, b"two"))
        time.sleep(0.2)
        s.sendall(_frame(0x8, struct.pack("!H", 1000) + b"bye"))
        more, eof = _recv_until_eof(s, 3.0)
        data += more
    finally:
        s.close()
    # gevent.pywsgi keeps the connection for another request
    assert eof or REFERENCE, ("the server did not close the connection",
                              data)
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols", data
    fields = {k.strip().lower(): v.strip() for k, _, v in
              (line.partition(b":") for line in lines[1:])}
    accept = base64.b64encode(hashlib.sha1(
        key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    assert fields[b"sec-websocket-accept"] == accept, data
    assert fields[b"upgrade"].lower() == b"websocket", data
    assert data.count(b"HTTP/1.1") == 1, data
    frames = _parse_frames(rest)
    assert frames[:2] == [(True, 0x1, b"one"), (True, 0x1, b"two")], frames
    assert [f[1] for f in frames[2:]] == [0x8], frames  # one close, echoed
    assert frames[2][2][:2] == struct.pack("!H", 1000), frames


def test_flask_sock_many_clients_at_once(sock_server):
    clients = [websocket.create_connection(_ws_url(sock_server, "/echo"),
                                           timeout=TIMEOUT)
               for _ in range(20)]
    try:
        for i, ws in enumerate(clients):
            ws.send("client %d" % i)
        assert [ws.recv() for ws in clients] == ["client %d" % i
                                                 for i in range(20)]
    finally:
        for ws in clients:
            ws.close()


# -- gevent-websocket's style: environ['wsgi.websocket'] ------------------------

@pytest.fixture(params=GEVENT_WEBSOCKET)
def gws_server(request):
    if REFERENCE and request.param:
        pytest.skip("gevent.pywsgi has no wsgi.websocket without "
                    "gevent-websocket")
    proc = gevent_server("wsapps:gws_app", chdir=APPS,
                         hide_gevent_websocket=request.param)
    try:
        yield proc
        _clean_stop(proc)
    finally:
        proc.kill()


def test_view_returning_a_response_after_its_websocket(gws_server):
    """A Flask view written for gevent-websocket uses the websocket, then
    returns "" (Flask calls start_response('200 OK')): the client sees its
    answer and a normal close (1000), and nothing is logged as an error."""
    ws = websocket.create_connection(_ws_url(gws_server, "/shout"),
                                     timeout=TIMEOUT)
    try:
        ws.send("hello")
        assert ws.recv() == "HELLO"
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        # (gevent-websocket 0.10.1 leaves the code out of its close frames)
        assert data[:2] == struct.pack("!H", 1000) or (
            REFERENCE and data == b""), data
    finally:
        ws.close()
    time.sleep(0.2)  # the error log line, if any, comes before the close
    assert "[ERROR]" not in gws_server.stderr, gws_server.stderr


# -- (b) Flask-SocketIO -----------------------------------------------------------

def _info(proc):
    resp = request(proc.urls[0], path="/info")
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def test_socketio_chose_the_expected_websocket(sio_server):
    info = _info(sio_server)
    assert info == {
        "async_mode": "gevent",
        "websocket": ("simple-websocket" if sio_server.hidden
                      else "gevent-websocket")}


def _receive(client, timeout=TIMEOUT):
    return client.receive(timeout=timeout)


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_socketio_events_both_ways(sio_server, transport):
    with socketio.SimpleClient() as client:
        client.connect(sio_server.urls[0], transports=[transport],
                       wait_timeout=TIMEOUT)
        assert client.client.transport() == transport
        event, data = _receive(client)
        assert event == "welcome" and data == {"sid": client.sid}
        client.emit("echo", {"n": 1, "text": "héllo ✓"})
        assert _receive(client) == ["echoed", {"n": 1, "text": "héllo ✓"}]
        assert client.call("double", 21, timeout=TIMEOUT) == 42
        payload = {"blob": "y" * 100_000}
        client.emit("echo", payload)
        assert _receive(client) == ["echoed", payload]
        # (python-engineio takes at most 16 packets in one polling POST)
        for i in range(10):
            client.emit("echo", i)
        assert [_receive(client)[1] for _ in range(10)] == list(range(10))


@pytest.mark.parametrize("transports", [("polling", "polling"),
                                        ("websocket", "websocket"),
                                        ("polling", "websocket")],
                         ids="-".join)
def test_socketio_broadcast_to_two_clients(sio_server, transports):
    one, two = socketio.SimpleClient(), socketio.SimpleClient()
    try:
        for client, transport in zip((one, two), transports):
            client.connect(sio_server.urls[0], transports=[transport],
                           wait_timeout=TIMEOUT)
            assert client.client.transport() == transport
            assert _receive(client)[0] == "welcome"
        one.emit("say", "from one")
        assert _receive(one) == ["said", "from one"]
        assert _receive(two) == ["said", "from one"]
        two.emit("say", {"from": "two"})
        assert _receive(two) == ["said", {"from": "two"}]
        assert _receive(one) == ["said", {"from": "two"}]
        # one leaves; two goes on and is alone
        one.disconnect()
        two.emit("say", "still here")
        assert _receive(two) == ["said", "still here"]
        with pytest.raises(socketio.exceptions.TimeoutError):
            _receive(two, timeout=0.3)
    finally:
        one.disconnect()
        two.disconnect()
