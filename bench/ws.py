#!/usr/bin/env python3
"""The websocket benchmark: lichen beside gevent-websocket and websockets.

    python3 bench/ws.py [--only SERVER,...] [--scenarios NAME,...]
                        [--duration SECONDS] [--repeat N] [--name NAME]
                        [--list]

Servers (bench/ws_apps.py is the application of all of them):

    lichen            python -m lichen ws_apps:app (native mode)
    lichen-gevent     the same with --gevent
    gevent-websocket  gevent.pywsgi.WSGIServer, handler_class=
                      geventwebsocket.handler.WebSocketHandler
    websockets        the websockets library's own asyncio server
                      (websockets.asyncio.server.serve), compression=None

No server compresses: lichen runs with --no-ws-compression where it has
the option, and the load client offers no extension anyway.

Scenarios:

    echo       100 websockets, each with one 32-byte text message in flight:
               it sends the next when the echo of the last is back
    pipelined  the same with 8 messages in flight on each websocket
    broadcast  10,000 websockets open on /broadcast, idle; then one of them
               sends a message that the server sends to all 10,000; the
               time from that send until the last one has it (the median
               of BROADCASTS broadcasts), and the server's memory per idle
               websocket: its RSS with the 10,000 open minus its RSS before
               them, over 10,000 (the first round's, on a fresh server, as
               bench/run.py's idle scenario)

The load client is bench/ref/ws_load.c (epoll, no third-party code; built
here with gcc -O2), pinned to CPU 1; each server is one process pinned to
CPU 0.  Server CPU is the CPU time of every process of the server's
session, as in bench/run.py (whose helpers this script imports: process
CPU clocks, RSS, the peers venv and machine()).  The servers stay up side by
side and each scenario is measured in rounds, a run of every server per
round (--repeat N, default 3); the run of median messages per CPU-second
(echo) or median broadcast time is shown, and ratios are the medians of
the ratios within each round.  The page is written to
docs/benchmarks/NAME.md (--name, default websockets).

The peers run in bench/.venv-peers (created and filled from PyPI as
bench/run.py does: gevent, gevent-websocket, websockets); lichen in the
project venv .venv.  Standard library only.
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as base  # noqa: E402  bench/run.py: the suite's helpers
from run import Abort, Failed, log  # noqa: E402

ROOT = base.ROOT
LICHEN_PY = base.LICHEN_PY
PEERS_PY = base.PEERS_PY
HOST = base.HOST
SERVER_CPU = base.SERVER_CPU
LOAD_CPU = base.LOAD_CPU
LOAD_SRC = os.path.join(HERE, "ref", "ws_load.c")
LOAD_BIN = os.path.join(HERE, "ref", "ws_load")
OUT_DIR = base.OUT_DIR
ECHO_CONNS, ECHO_SIZE = 100, 32
BCAST_CONNS = 10000
BROADCASTS = 5  # per round

# name -> (kind, packages in the peers venv, note)
SERVERS = {
    "lichen": ("lichen", [], "python -m lichen ws_apps:app (native mode)"),
    "lichen-gevent": ("lichen", [], "python -m lichen --gevent ws_apps:app "
                      "(gevent mode: monkey-patched, gevent's hub)"),
    "gevent-websocket": ("peer", ["gevent", "gevent-websocket"],
                         "gevent-websocket on gevent.pywsgi.WSGIServer "
                         "(handler_class=WebSocketHandler, log=None)"),
    "websockets": ("peer", ["websockets"],
                   "the websockets library's asyncio server "
                   "(websockets.asyncio.server.serve, compression=None, "
                   "ping_interval=None, asyncio's default loop)"),
}
base.IMPORT_NAME["gevent-websocket"] = "geventwebsocket"

SCENARIOS = {
    "echo": dict(kind="echo", inflight=1,
                 title="%d websockets, one %d-byte text message in "
                 "flight on each" % (ECHO_CONNS, ECHO_SIZE)),
    "pipelined": dict(kind="echo", inflight=8,
                      title="%d websockets, 8 text messages of %d "
                      "bytes in flight on each" % (ECHO_CONNS, ECHO_SIZE)),
    "broadcast": dict(kind="broadcast",
                      title="%s idle websockets, one message "
                      "sent to all of them" % "{:,}".format(BCAST_CONNS)),
}


# --------------------------------------------------------------- setup

def check_system():
    missing = [t for t in ("taskset", "gcc") if not base.shutil.which(t)]
    if missing:
        raise Abort("missing: %s (apt-get install -y util-linux gcc)"
                    % ", ".join(missing))
    if (os.cpu_count() or 1) < 2:
        raise Abort("needs at least 2 CPUs (server on CPU 0, load on CPU 1)")
    if not os.path.exists(LICHEN_PY):
        raise Abort("%s not found: run 'make venv' in %s" % (LICHEN_PY, ROOT))


def build_load():
    if (os.path.exists(LOAD_BIN)
            and os.path.getmtime(LOAD_BIN) >= os.path.getmtime(LOAD_SRC)):
        return
    log("building %s ..." % os.path.relpath(LOAD_BIN))
    r = base.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-o",
                  LOAD_BIN, LOAD_SRC])
    if r.returncode:
        raise Abort("could not build the websocket load client:\n" + r.stderr)


def lichen_websockets():
    """None when the project venv's lichen serves websockets (it has
    lichen.websocket), else why not."""
    r = base.run([LICHEN_PY, "-c", "import lichen.websocket"])
    if r.returncode:
        return "no websocket support in this lichen (no lichen.websocket)"
    return None


def lichen_options():
    r = base.run([LICHEN_PY, "-m", "lichen", "--help"])
    return ["--no-ws-compression"] if "--no-ws-compression" in r.stdout \
        else []


def versions(peers, lichen_gevent):
    code = ("import importlib.metadata as m, sys\n"
            "for p in sys.argv[1:]:\n"
            "    try: print(p, m.version(p))\n"
            "    except Exception: print(p, '-')\n")
    out = {}
    own = ["lichen", "greenlet"] + (["gevent"] if lichen_gevent else [])
    for py, pkgs in ((LICHEN_PY, own), (PEERS_PY, peers + ["greenlet"])):
        if not os.path.exists(py):
            continue
        r = base.run([py, "-c", code] + pkgs)
        for line in r.stdout.splitlines():
            k, v = line.split(" ", 1)
            if py == LICHEN_PY and k != "lichen":
                k += " (lichen)"
            out[k] = v
    out["gcc"] = base.run(["gcc", "-dumpfullversion"]).stdout.strip()
    return out


# --------------------------------------------------------------- servers

def server_cmd(name, port, extra):
    pin = ["taskset", "-c", SERVER_CPU]
    if SERVERS[name][0] == "lichen":
        cmd = [LICHEN_PY, "-m", "lichen", "ws_apps:app", "--bind",
               "%s:%d" % (HOST, port), "--backlog", "4096"] + extra
        if name == "lichen-gevent":
            cmd.append("--gevent")
        return pin + cmd
    return pin + [PEERS_PY, os.path.join(HERE, "ws_apps.py"), name, HOST,
                  str(port)]


class WsClient:
    """A minimal blocking websocket client (the start-up check)."""

    def __init__(self, port, path, timeout=5):
        import base64
        import hashlib
        import socket
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n" % (path, HOST, port, key)
        ).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Failed("closed during the handshake: %r" % data[:80])
            data += chunk
        head, self.buf = data.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise Failed("handshake answered %r" % head[:40].decode(
                errors="replace"))
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()
        ).digest())
        if accept not in head:
            raise Failed("wrong Sec-WebSocket-Accept")

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        assert len(data) < 126
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(
            b ^ mask[i % 4] for i, b in enumerate(data)))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Failed("closed by the server")
            self.buf += chunk

    def recv(self):
        self._need(2)
        op, n = self.buf[0] & 15, self.buf[1] & 127
        h = 2
        if n == 126:
            self._need(4)
            n, h = int.from_bytes(self.buf[2:4], "big"), 4
        self._need(h + n)
        data, self.buf = self.buf[h:h + n], self.buf[h + n:]
        return op, data

    def close(self):
        self.sock.close()


class Server(base.Server):
    """A server of SERVERS, started and checked with a websocket echo and
    a broadcast; the rest (stop, tail, alive) is bench/run.py's."""

    extra = []  # lichen's options (lichen_options())

    def start(self, procs):
        self.proc = subprocess.Popen(
            server_cmd(self.name, self.port, self.extra), cwd=HERE,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True, preexec_fn=base.raise_nofile)
        procs.append(self.proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed("exited at start with status %s: %s"
                             % (self.proc.returncode, self.tail()))
            try:
                c = WsClient(self.port, "/echo")
            except ConnectionRefusedError:
                time.sleep(0.05)
                continue
            except (OSError, Failed) as e:
                raise Failed("/echo: %s" % e)
            try:
                self.check(c)
            except (OSError, Failed) as e:
                raise Failed("check failed: %s (%s)" % (e, self.tail()))
            return
        raise Failed("did not answer within 20 s: " + self.tail())

    def check(self, c):
        try:
            c.send("hello there")
            if c.recv() != (1, b"hello there"):
                raise Failed("/echo: not echoed")
        finally:
            c.close()
        c = WsClient(self.port, "/broadcast")
        try:
            c.send("broadcast 0 check")
            if c.recv() != (1, b"broadcast 0 check"):
                raise Failed("/broadcast: not sent back")
        finally:
            c.close()
        time.sleep(0.1)


def settle(sid, limit=15.0):
    """Waits until the server is idle: under 2 ms of CPU in 200 ms."""
    deadline = time.monotonic() + limit
    last = base.cpu_seconds(sid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = base.cpu_seconds(sid)
        if now - last < 0.002:
            return
        last = now


# --------------------------------------------------------------- load

def load_cmd(*args):
    return ["taskset", "-c", LOAD_CPU, LOAD_BIN] + [str(a) for a in args]


def fields(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def expect(proc, prefix, timeout):
    """The next line of the load client's stdout that starts with prefix
    (read from the pipe unbuffered, so that select never waits for a
    line already read)."""
    import select
    fd = proc.stdout.fileno()
    buf = proc.__dict__.setdefault("_lines", [b""])
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in buf[0]:
            line, buf[0] = buf[0].split(b"\n", 1)
            line = line.decode()
            if line.startswith(prefix):
                return line.strip()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise Failed("the load client said no %r within %d s"
                         % (prefix, timeout))
        chunk = os.read(fd, 65536)
        if not chunk:
            raise Failed("the load client exited (%s)"
                         % proc.stderr.read().strip()[-300:])
        buf[0] += chunk


def task_ticks(cpu):
    """(ticks of processes, all ticks) of one CPU since boot: user, nice
    and system time, without irq and softirq time (the network's work,
    which the kernel charges to no process, as it is not in the servers'
    CPU time either) and without steal."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu%s " % cpu):
                v = [int(x) for x in line.split()[1:]]
                return v[0] + v[1] + v[2], sum(v[:8])
    return 0, 0


def echo(server, sc, duration):
    sid = server.proc.pid
    proc = subprocess.Popen(
        load_cmd("echo", HOST, server.port, "/echo", ECHO_CONNS, duration,
                 sc["inflight"], ECHO_SIZE, 1),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        opened = fields(expect(proc, "open", 30))
        if opened.get("failed"):
            raise Failed("%d of %d websockets did not open"
                         % (opened["failed"], ECHO_CONNS))
        expect(proc, "start", 10)
        cpu0 = base.cpu_seconds(sid)
        ticks0 = [task_ticks(SERVER_CPU), base.cpu_ticks(LOAD_CPU)]
        end = fields(expect(proc, "end", duration + 10))
        cpu1 = base.cpu_seconds(sid)
        ticks1 = [task_ticks(SERVER_CPU), base.cpu_ticks(LOAD_CPU)]
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    msgs = int(end["messages"])
    res = {"messages": msgs, "mps": msgs / end["seconds"],
           "cpu": cpu1 - cpu0, "p50": end["p50_us"] * 1e-6,
           "p99": end["p99_us"] * 1e-6, "failures": int(end["errors"])}
    res["per_cpu"] = msgs / res["cpu"] if res["cpu"] > 0 else None
    # CPU 0: the share processes had beyond the server's own is other
    # processes of the machine; CPU 1: busy, network work (softirq)
    # included, whoever used it (notes when large)
    busy = [(b1 - b0) / (a1 - a0) if a1 > a0 else None
            for (b0, a0), (b1, a1) in zip(ticks0, ticks1)]
    res["cpu0_busy"], res["cpu1_busy"] = busy
    if busy[0] is not None:
        res["others0"] = max(0.0, busy[0] - res["cpu"] / end["seconds"])
    settle(sid, 5)
    return res


def warm_broadcast(server):
    """One websocket on /broadcast and one broadcast first, so that what is
    built lazily once is not counted per websocket."""
    c = WsClient(server.port, "/broadcast")
    try:
        c.send("broadcast 0 warm-up")
        c.recv()
    finally:
        c.close()


def broadcast(server):
    sid = server.proc.pid
    warm_broadcast(server)
    settle(sid, 5)
    rss0 = base.rss_kib(sid)
    cpu0 = base.cpu_seconds(sid)
    proc = subprocess.Popen(
        load_cmd("hold", HOST, server.port, "/broadcast", BCAST_CONNS),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, bufsize=1)
    res = {"failures": 0, "errors": ""}
    try:
        opened = fields(expect(proc, "open", 150))
        res["open_s"] = opened["seconds"]
        settle(sid, 10)
        res["open_cpu"] = base.cpu_seconds(sid) - cpu0
        if opened.get("failed"):
            res["failures"] += int(opened["failed"])
            res["errors"] = "%d of %d websockets did not open" % (
                opened["failed"], BCAST_CONNS)
        time.sleep(0.3)
        rss1 = base.rss_kib(sid)
        n = BCAST_CONNS - int(opened.get("failed", 0))
        res["rss_per_ws_kib"] = (rss1 - rss0) / n if n else None
        res["rss_delta_kib"] = rss1 - rss0
        times, cpus = [], []
        for _ in range(BROADCASTS):
            c0 = base.cpu_seconds(sid)
            proc.stdin.write("b\n")
            proc.stdin.flush()
            b = fields(expect(proc, "bcast", 40))
            cpus.append(base.cpu_seconds(sid) - c0)
            if b["got"] < n:
                res["failures"] += n - int(b["got"])
                res["errors"] = "a broadcast reached %d of %d" % (
                    b["got"], n)
            times.append(b["us"] * 1e-6)
            time.sleep(0.1)
        proc.stdin.write("a\n")
        proc.stdin.flush()
        alive = int(fields(expect(proc, "alive", 10)
                           .replace("alive ", "alive="))["alive"])
        if alive < n:
            res["errors"] = "%d of %d websockets still open at the end" % (
                alive, n)
            res["failures"] += n - alive
        proc.stdin.write("q\n")
        proc.stdin.flush()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass
    res["bcast"] = statistics.median(times)
    res["bcast_runs"] = times
    res["bcast_cpu"] = statistics.median(cpus)
    res["handshake_cpu"] = res["open_cpu"] / BCAST_CONNS
    settle(sid, 15)
    return res


def measure(server, scn, duration):
    sc = SCENARIOS[scn]
    if sc["kind"] == "echo":
        res = echo(server, sc, duration)
    else:
        res = broadcast(server)
    if not server.alive():
        raise Failed("server exited during the run: " + server.tail())
    return res


def key_of(scn):
    """The figure a scenario's runs are ordered by (higher is better for
    echo, lower for broadcast)."""
    return "per_cpu" if SCENARIOS[scn]["kind"] == "echo" else "bcast"


def median_run(scn, runs):
    k = key_of(scn)
    ok = sorted((r for r in runs if r.get(k)), key=lambda r: r[k])
    res = dict(ok[(len(ok) - 1) // 2] if ok else runs[0])
    res["rounds"] = [r.get(k) for r in runs]
    res["spread"] = [r[k] for r in ok]
    if SCENARIOS[scn]["kind"] == "echo":
        res["mps_rounds"] = [r["mps"] for r in runs]
    else:
        # memory per idle websocket: the first run, on a fresh server
        res["rss_per_ws_kib"] = runs[0].get("rss_per_ws_kib")
        res["rss_delta_kib"] = runs[0].get("rss_delta_kib")
    return res


def estimate_seconds(servers, scenarios, duration, repeat):
    """A little over what a run takes on a 2-core VM: an echo run its 1 s
    warm-up, the measured run and 1 s more; a broadcast run 10 s (the
    10,000 websockets opened and closed, the broadcasts, waits for the
    server to settle); a server's start 3 s."""
    per_round = 0
    for scn in scenarios:
        each = duration + 2 if SCENARIOS[scn]["kind"] == "echo" else 10
        per_round += each * len(servers)
    return per_round * repeat + 3 * len(servers)


def run_rounds(servers, scenarios, args, procs, results, skip):
    live = {}
    try:
        for scn in scenarios:
            who = [n for n in servers if n not in skip]
            for n in servers:
                if n in skip:
                    results.setdefault(scn, {})[n] = {"skip": skip[n]}
            runs = {n: [] for n in who}
            failed = {}
            for rnd in range(args.repeat):
                k = rnd % len(who) if who else 0
                for name in who[k:] + who[:k]:
                    if name in failed:
                        continue
                    server = live.get(name)
                    # broadcast: a fresh server for its first round (the
                    # memory figure), reused after
                    if server is not None and (
                            not server.alive() or
                            (SCENARIOS[scn]["kind"] == "broadcast"
                             and rnd == 0)):
                        server.stop()
                        server = None
                    if server is None:
                        server = live[name] = Server(name)
                        try:
                            server.start(procs)
                        except Failed as e:
                            failed[name] = "did not start: %s" % e
                            server.stop()
                            del live[name]
                            continue
                    log("%-17s %-10s %s..." % (
                        name, scn, "" if args.repeat == 1 else
                        "round %d of %d " % (rnd + 1, args.repeat)))
                    try:
                        runs[name].append(measure(server, scn,
                                                  args.duration))
                    except Failed as e:
                        failed[name] = "failed: %s" % e
                        server.stop()
                        del live[name]
            for name in who:
                results.setdefault(scn, {})[name] = (
                    {"skip": failed[name]} if name in failed or
                    not runs[name] else median_run(scn, runs[name]))
    finally:
        for server in live.values():
            server.stop()


# --------------------------------------------------------------- report

def fmt_t(sec):
    return base.fmt_lat(sec)


def round_ratio(a, b, key, rounds_key):
    """a's figure over b's: the median of the ratios within each round
    when both have all rounds, else the ratio of the shown figures."""
    if not a or not b:
        return None
    x, y = a.get(rounds_key), b.get(rounds_key)
    if x and y and len(x) == len(y):
        rs = [p / q for p, q in zip(x, y) if p and q]
        if rs:
            return statistics.median(rs)
    p, q = a.get(key), b.get(key)
    return p / q if p and q else None


def ratio_cell(v):
    return "-" if v is None else "%.2fx" % v


def echo_table(scn, servers, results):
    rows = results.get(scn, {})
    base_row = rows.get("lichen")
    if base_row is not None and "skip" in base_row:
        base_row = None
    head = ["server", "messages/s", "p50", "p99", "CPU us/msg",
            "messages per CPU-second", "min-max", "lichen's is",
            "failures"]
    lines = ["### %s: %s" % (scn, SCENARIOS[scn]["title"]), "",
             "| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]
    notes = []
    for name in servers:
        r = rows.get(name)
        if r is None:
            continue
        if "skip" in r:
            notes.append("%s: %s" % (name, r["skip"]))
            continue
        pc = r.get("per_cpu")
        sp = r.get("spread") or []
        cells = [name, "%.0f" % r["mps"], fmt_t(r["p50"]), fmt_t(r["p99"]),
                 "%.2f" % (1e6 / pc) if pc else "-",
                 "%.0f" % pc if pc else "-",
                 "%.0f-%.0f" % (min(sp), max(sp)) if len(sp) > 1 else "-",
                 ratio_cell(round_ratio(base_row, r, "per_cpu", "rounds")),
                 str(r["failures"])]
        lines.append("| " + " | ".join(cells) + " |")
        if r.get("others0") is not None and r["others0"] > 0.05:
            notes.append("%s (the run shown): other processes of the "
                         "machine took %.0f %% of CPU %s during the run"
                         % (name, r["others0"] * 100, SERVER_CPU))
        if (r.get("cpu1_busy") or 0) > 0.95:
            notes.append("%s (the run shown): CPU %s (the load client's) "
                         "was %.0f %% busy, the loopback's network work "
                         "included: messages/s may be held back by it, "
                         "messages per CPU-second is not"
                         % (name, LOAD_CPU, r["cpu1_busy"] * 100))
    if notes:
        lines += [""] + ["- " + n for n in notes]
    return "\n".join(lines)


def broadcast_table(servers, results):
    scn = "broadcast"
    rows = results.get(scn, {})
    base_row = rows.get("lichen")
    if base_row is not None and "skip" in base_row:
        base_row = None
    head = ["server", "broadcast to all", "min-max", "server CPU per "
            "broadcast", "RSS KiB per idle websocket", "lichen's is",
            "opening %s: s" % "{:,}".format(BCAST_CONNS),
            "CPU us per opening", "failures"]
    lines = ["### %s: %s" % (scn, SCENARIOS[scn]["title"]), "",
             "| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]
    notes = []
    for name in servers:
        r = rows.get(name)
        if r is None:
            continue
        if "skip" in r:
            notes.append("%s: %s" % (name, r["skip"]))
            continue
        sp = r.get("spread") or []
        kib = r.get("rss_per_ws_kib")
        bk = base_row and base_row.get("rss_per_ws_kib")
        cells = [name, fmt_t(r["bcast"]),
                 "%s-%s" % (fmt_t(min(sp)), fmt_t(max(sp)))
                 if len(sp) > 1 else "-",
                 fmt_t(r["bcast_cpu"]),
                 "%.1f" % kib if kib is not None else "-",
                 "%.2fx" % (bk / kib) if bk is not None and kib else "-",
                 "%.2f" % r["open_s"], "%.0f" % (r["handshake_cpu"] * 1e6),
                 str(r["failures"])]
        lines.append("| " + " | ".join(cells) + " |")
        if r.get("errors"):
            notes.append("%s: %s" % (name, r["errors"]))
    if notes:
        lines += [""] + ["- " + n for n in notes]
    return "\n".join(lines)


def targets(results):
    rows = []

    def get(scn, name):
        r = results.get(scn, {}).get(name)
        return None if r is None or "skip" in r else r

    def add(what, v, bound, ok, fmt="%.2fx"):
        rows.append("| %s | %s | %s | %s |" % (
            what, "- (not measured)" if v is None else fmt % v,
            bound or "-",
            "-" if v is None or not bound else "yes" if ok else "**no**"))

    for scn in ("echo", "pipelined"):
        if scn not in results:
            continue
        for who in ("lichen", "lichen-gevent"):
            me = get(scn, who)
            if who == "lichen-gevent" and not me:
                continue
            for peer, bound in (("gevent-websocket", 3.0),
                                ("websockets", 1.5)):
                p = get(scn, peer)
                if not p:
                    continue
                b = bound if who == "lichen" else None
                v = round_ratio(me, p, "per_cpu", "rounds")
                add("%s: %s messages per CPU-second vs %s"
                    % (scn, who, peer), v, b and ">= %.1fx" % b,
                    v is not None and v >= (b or 0))
                v = round_ratio(me, p, "mps", "mps_rounds")
                add("%s: %s messages/s vs %s" % (scn, who, peer), v,
                    b and ">= %.1fx" % b, v is not None and v >= (b or 0))
    bc = results.get("broadcast", {})
    gw = get("broadcast", "gevent-websocket")
    for who in ("lichen", "lichen-gevent"):
        me = get("broadcast", who)
        if not me and who == "lichen-gevent":
            continue
        if not bc:
            break
        v = None
        if me and gw and me.get("rss_per_ws_kib") is not None and \
                gw.get("rss_per_ws_kib"):
            v = me["rss_per_ws_kib"] / gw["rss_per_ws_kib"]
        b = "<= 0.50x" if who == "lichen" else None
        add("broadcast: %s RSS per idle websocket vs gevent-websocket "
            "(%.1f KiB)" % (who, gw["rss_per_ws_kib"]) if gw else
            "broadcast: %s RSS per idle websocket vs gevent-websocket" % who,
            v, b, v is not None and v <= 0.5, "%.3fx")
    if not rows:
        return []
    return ["### Targets", "",
            "Ratios are lichen's figure over the peer's (the median of the "
            "ratios within each round): above 1 = more messages; the "
            "memory ratio is KiB per idle websocket (first round).", "",
            "| target | measured | bound | met |",
            "|---|---:|---:|---:|"] + rows


# --------------------------------------------------------------- main

def main():
    ap = base.arg_parser(__doc__, SERVERS, SCENARIOS, "echo", 3,
                         "measure each scenario in N rounds across the "
                         "servers (default 3)", "websockets",
                         "directory of NAME.md (default docs/benchmarks)")
    args = ap.parse_args()
    if args.list:
        return base.list_choices(SERVERS, SCENARIOS)
    servers = [s.strip() for s in args.only.split(",") if s.strip()] \
        or list(SERVERS)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] \
        or list(SCENARIOS)
    servers = base.chosen(ap, servers, SERVERS, "server")
    scenarios = base.chosen(ap, scenarios, SCENARIOS, "scenario")
    estimate = estimate_seconds(servers, scenarios, args.duration,
                                args.repeat)
    base.check_length(ap, args, estimate)

    procs = []

    def on_term(signum, frame):
        raise KeyboardInterrupt

    base.signal.signal(base.signal.SIGTERM, on_term)
    base.raise_nofile()
    try:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    except OSError:
        pass
    started = time.monotonic()
    results, skip, install_failed = {}, {}, {}
    try:
        check_system()
        build_load()
        peers = sorted({p for s in servers for p in SERVERS[s][1]})
        if peers:
            install_failed = base.install_peers(peers)
        for s in servers:
            bad = [p for p in SERVERS[s][1] if install_failed.get(p)]
            if bad:
                skip[s] = "not installed (%s)" % install_failed[bad[0]]
        if any(SERVERS[s][0] == "lichen" for s in servers):
            why = lichen_websockets()
            for s in servers:
                if why and SERVERS[s][0] == "lichen":
                    skip[s] = why
            Server.extra = lichen_options()
        mline = base.machine()
        vers = versions(peers, "lichen-gevent" in servers)
        log("about %d min of measurements" % (estimate // 60 + 1))
        run_rounds(servers, scenarios, args, procs, results, skip)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Abort as e:
        log("error: %s" % e)
        return 1
    finally:
        for p in procs:
            base.stop(p)

    elapsed = time.monotonic() - started
    cmd = base.command_line("bench/ws.py", args, servers, scenarios, 3,
                            "websockets")
    sections = []
    for scn in scenarios:
        sections.append(broadcast_table(servers, results)
                        if scn == "broadcast"
                        else echo_table(scn, servers, results))
    goals = targets(results)
    if goals:
        sections.insert(0, "\n".join(goals))
    vline = ", ".join("%s %s" % kv for kv in vers.items())
    header = [
        "# Websocket benchmark", "",
        "Machine: " + mline, "",
        "Versions: " + vline, "",
        "Command: `%s` (%.0f min, %s)" % (cmd, elapsed / 60,
                                          time.strftime("%Y-%m-%d")), "",
        "Servers: " + "; ".join("**%s**: %s" % (n, SERVERS[n][2])
                                for n in servers) + ". No compression "
        "(the client offers none%s). The application is "
        "bench/ws_apps.py, the same for all." % (
            "; lichen runs with --no-ws-compression" if Server.extra
            else ""), "",
        "Each server is one process pinned to CPU %s; the load client "
        "(bench/ref/ws_load.c: C, epoll, one thread, masked frames, every "
        "echo checked) runs on CPU %s. Echo runs last %d s after a 1 s "
        "warm-up. **CPU us/msg** = server CPU time (user + kernel, every "
        "process of the server's session) over the run / echoes received; "
        "**messages per CPU-second** is its inverse. Each scenario was "
        "measured in %d round%s, a run of every server per round with the "
        "servers up side by side, and the run of median messages per "
        "CPU-second (broadcast: median broadcast time) is shown, "
        "**min-max** giving the spread; **lichen's is** = lichen's "
        "messages per CPU-second over the row's (broadcast: lichen's KiB "
        "per idle websocket over the row's), the median of the ratios "
        "within each round. **p50/p99**: from a message's send to its "
        "echo. Broadcast: %s websockets opened (at most 64 handshakes "
        "under way at once), then %d broadcasts per round, each the time "
        "from the client's send of one message to the arrival of the "
        "server's copy at the last of the %s (the round's median); **RSS "
        "KiB per idle websocket** = (server RSS with them open - RSS "
        "before) / %s, measured in the first round on a freshly started "
        "server after one websocket and one broadcast of warm-up; "
        "**CPU us per opening**: the server's CPU for opening them, per "
        "websocket (TCP accept + handshake + the application started)."
        % (SERVER_CPU, LOAD_CPU, args.duration, args.repeat,
           "" if args.repeat == 1 else "s", "{:,}".format(BCAST_CONNS),
           BROADCASTS, "{:,}".format(BCAST_CONNS),
           "{:,}".format(BCAST_CONNS)), ""]
    notes = ["%s: not installed: %s" % kv for kv in install_failed.items()
             if kv[1]]
    if notes:
        header += ["Notes:", ""] + ["- " + n for n in notes] + [""]
    text = "\n".join(header) + "\n" + "\n\n".join(sections) + "\n"
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, args.name + ".md")
    with open(path, "w") as f:
        f.write(text)
    print(text)
    log("written to %s" % os.path.relpath(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
