"""10,000 websockets open in one lichen process, a broadcast to all of them.

lichen runs in a subprocess, in native mode and with --gevent
(tests/helpers_cli.py's LichenProcess), serving this module's
``application``; the client side is this process: 10,000 non-blocking
sockets driven by one selectors loop, no thread per socket. The open-files
limit is raised to the hard limit (inherited by the server).

What is checked: every handshake is answered 101 with the right
Sec-WebSocket-Accept; one message sent on one websocket is broadcast by the
application to all 10,000 and every client gets it, whole and once; the
server's memory per idle websocket (RSS with them open minus RSS before,
over 10,000) is printed and stays under MAX_KIB_PER_WS; once the clients
close, the application sees every websocket end (receive() returns None).
"""
import base64
import errno
import hashlib
import os
import resource
import selectors
import socket
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
N = 10000
MAX_KIB_PER_WS = 64
PENDING = 256  # connections connecting or in their handshake at once
KEY = base64.b64encode(b"lichen-scale-key").decode()
ACCEPT = base64.b64encode(hashlib.sha1(
    (KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())

# --------------------------------------------------------------- the server

CLIENTS = set()


def application(environ, start_response):
    """/broadcast: the websocket joins CLIENTS; a text message starting
    with "broadcast" goes to every member, "count" is answered with the
    number of members. Anything else: 404."""
    ws = environ.get("wsgi.websocket")
    if ws is None or environ.get("PATH_INFO") != "/broadcast":
        start_response("404 Not Found", [("Content-Length", "0")])
        return []
    CLIENTS.add(ws)
    try:
        while True:
            msg = ws.receive()
            if msg is None:
                break
            if msg.startswith("broadcast"):
                for other in list(CLIENTS):
                    try:
                        other.send(msg)
                    except Exception:
                        CLIENTS.discard(other)
            elif msg == "count":
                ws.send(str(len(CLIENTS) - 1))
    finally:
        CLIENTS.discard(ws)
    return []


# --------------------------------------------------------------- the client

def masked_text(text):
    data = text.encode()
    assert len(data) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(data)]) + mask + bytes(
        b ^ mask[i & 3] for i, b in enumerate(data))


def handshake(port):
    return ("GET /broadcast HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (port, KEY)).encode()


def check_head(head):
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 101"), head
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    assert fields.get(b"sec-websocket-accept") == ACCEPT, head
    assert fields.get(b"upgrade", b"").lower() == b"websocket", head


def open_all(port, n, deadline):
    """n websockets to /broadcast, at most PENDING being opened at once;
    returns their sockets (non-blocking) and the bytes each received after
    its handshake's head."""
    sel = selectors.DefaultSelector()
    req = handshake(port)
    socks, rest = [None] * n, [b""] * n
    bufs = {}
    started = opened = 0
    try:
        while opened < n:
            while started < n and started - opened < PENDING:
                s = socket.socket()
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", port))
                assert err in (0, errno.EINPROGRESS), os.strerror(err)
                socks[started] = s
                bufs[started] = None  # not connected yet
                sel.register(s, selectors.EVENT_WRITE, started)
                started += 1
            assert time.monotonic() < deadline, \
                "%d of %d websockets opened in time" % (opened, n)
            for key, _ in sel.select(1.0):
                i, s = key.data, key.fileobj
                if bufs[i] is None:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    assert not err, "connect: %s" % os.strerror(err)
                    s.send(req)  # small: the socket takes it whole
                    bufs[i] = b""
                    sel.modify(s, selectors.EVENT_READ, i)
                    continue
                data = s.recv(65536)
                assert data, "websocket %d closed during its handshake" % i
                bufs[i] += data
                if b"\r\n\r\n" in bufs[i]:
                    head, rest[i] = bufs[i].split(b"\r\n\r\n", 1)
                    check_head(head)
                    del bufs[i]
                    sel.unregister(s)
                    opened += 1
    except BaseException:
        for s in socks:
            if s is not None:
                s.close()
        raise
    finally:
        sel.close()
    return socks, rest


def receive_all(socks, rest, want, deadline):
    """Reads until every socket has the frame want (bytes, as the server
    sends it: unmasked); returns how many got it. Any other byte is a
    failure."""
    sel = selectors.DefaultSelector()
    bufs = list(rest)
    done = 0
    for i, s in enumerate(socks):
        if bufs[i] == want:
            done += 1
        else:
            sel.register(s, selectors.EVENT_READ, i)
    try:
        while done < len(socks) and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                i = key.data
                data = key.fileobj.recv(65536)
                assert data, "websocket %d closed before the broadcast" % i
                bufs[i] += data
                assert want.startswith(bufs[i]), \
                    "websocket %d received %r" % (i, bufs[i][:80])
                if bufs[i] == want:
                    done += 1
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
    return done


def recv_frame(sock, timeout=10.0):
    sock.settimeout(timeout)
    data = b""
    while len(data) < 2 or len(data) < 2 + (data[1] & 127):
        chunk = sock.recv(4096)
        assert chunk, "closed by the server"
        data += chunk
    assert data[0] == 0x81 and data[1] < 126, data
    return data[2:2 + data[1]].decode()


def one_websocket(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(handshake(port))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "closed during the handshake"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    check_head(head)
    assert rest == b""
    return s


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raise_nofile(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < wanted:
        pytest.skip("needs %d open files, the limit is %d" % (wanted, soft))


def count_members(port):
    """The number of websockets in the application's CLIENTS, asked on a
    websocket of its own (not counted)."""
    s = one_websocket(port)
    try:
        s.sendall(masked_text("count"))
        return int(recv_frame(s))
    finally:
        s.close()


# --------------------------------------------------------------- the test

@pytest.mark.parametrize("mode", [[], ["--gevent"]],
                         ids=["native", "gevent"])
def test_ten_thousand_websockets_broadcast(mode):
    pytest.importorskip("lichen.websocket")
    if mode:
        pytest.importorskip("gevent")
    from helpers_cli import LichenProcess, child_env

    raise_nofile(N + 200)
    started = time.monotonic()
    proc = LichenProcess(mode + ["test_websocket_scale:application",
                                 "--bind", "127.0.0.1:0", "--backlog", "4096"],
                         env=child_env(PYTHONPATH=HERE))
    socks = []
    try:
        port, pid = proc.port, proc.proc.pid
        # one websocket and one broadcast first: what is built once is not
        # counted per websocket
        s = one_websocket(port)
        s.sendall(masked_text("broadcast warm-up"))
        assert recv_frame(s) == "broadcast warm-up"
        s.close()
        deadline = time.monotonic() + 10
        while count_members(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        rss0 = rss_kib(pid)

        t0 = time.monotonic()
        socks, rest = open_all(port, N, t0 + 60)
        t_open = time.monotonic() - t0
        assert not any(rest), "a frame before the broadcast"
        time.sleep(0.3)
        rss1 = rss_kib(pid)
        per_ws = (rss1 - rss0) / N
        assert count_members(port) == N

        msg = "broadcast to %d websockets" % N
        t0 = time.monotonic()
        socks[0].sendall(masked_text(msg))
        want = bytes([0x81, len(msg)]) + msg.encode()
        got = receive_all(socks, [b""] * N, want, t0 + 30)
        t_bcast = time.monotonic() - t0
        assert got == N, "%d of %d websockets got the broadcast" % (got, N)

        print("\n%s: %d websockets: opened in %.2f s, broadcast to all in "
              "%.0f ms; server RSS %.1f MiB -> %.1f MiB: %.1f KiB per "
              "websocket" % (" ".join(["lichen"] + mode), N, t_open,
                             t_bcast * 1e3, rss0 / 1024, rss1 / 1024,
                             per_ws), file=sys.stderr)
        assert per_ws < MAX_KIB_PER_WS, \
            "%.1f KiB per idle websocket" % per_ws

        # the clients go: the application sees every websocket end
        for s in socks:
            s.close()
        socks = []
        deadline = time.monotonic() + 15
        left = count_members(port)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = count_members(port)
        assert left == 0, "%d websockets still in the application after " \
            "their clients closed" % left
        assert proc.proc.poll() is None, proc.stderr
    finally:
        for s in socks:
            s.close()
        rc = proc.stop()
    assert rc == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    print("total %.1f s" % (time.monotonic() - started), file=sys.stderr)
