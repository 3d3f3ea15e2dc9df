#!/usr/bin/env python3
"""The TLS benchmark: lichen beside nginx and the Python servers, over TLS.

    python3 bench/tls.py [--only SERVER,...] [--scenarios NAME,...]
                         [--duration SECONDS] [--repeat N] [--quick]
                         [--name NAME] [--out DIR] [--list]

Servers (bench/tls_apps.py is the application of the WSGI servers):

    nginx            the distribution's nginx, 1 worker process: return 200
                     "Hello, World!" on /, a 1 MiB file on /1m
    lichen           python -m lichen --certfile --keyfile (native mode)
    lichen-gevent    the same with --gevent
    gunicorn-sync    gunicorn --certfile --keyfile -k sync -w 1
    gunicorn-gevent  the same with -k gevent
    gevent.pywsgi    gevent.pywsgi.WSGIServer(..., ssl_context=ctx), one
                     ssl.create_default_context(Purpose.CLIENT_AUTH) for
                     all connections (bench/tls_apps.py)
    granian          granian --interface wsgi --workers 1
                     --ssl-certificate --ssl-keyfile (its TLS is rustls)
    gevent.pywsgi+nodelay  gevent.pywsgi with TCP_NODELAY on each
                     accepted socket (hello only: below)

Scenarios:

    hello      GET / (13 bytes), keep-alive, wrk over https, 10
               connections: CPU per request
    handshake  a new TLS 1.3 connection per request, full handshakes:
               bench/ref/tls_load.c (two at once), handshakes per
               CPU-second of the server
    resumed    the same, each connection resuming the session of the one
               before; every connection is checked to be resumed
    1m         GET /1m, 1 MiB responses, keep-alive, wrk, 10 connections:
               lichen twice, a 1 MiB bytes object from the application and
               the 1 MiB file through wsgi.file_wrapper (/file1m); nginx
               the same file, static

The certificate is ECDSA P-256, self-signed, made with openssl req at start
in a temporary directory (the same for all servers), with the 1 MiB file
of random bytes.  Each server is one process (nginx and gunicorn: master +
1 worker, granian: its process tree) pinned to CPU 0; the load (wrk -t1,
tls_load) runs on CPU 1.  Server CPU is the CPU time of every process of the
server's session, as in bench/run.py (whose helpers this script imports).
The servers stay up side by side and each scenario is measured in rounds,
a run of every server per round (--repeat N, default 3): the run of median
CPU per request is shown, and the ratios are the medians of the ratios
within each round.  The page is written to docs/benchmarks/NAME.md
(--name, default tls).  See bench/README.md.

Standard library only; the peers run in bench/.venv-peers (created and
filled from PyPI as bench/run.py does), lichen in the project venv .venv.
"""
import argparse
import http.client
import os
import re
import resource
import shutil
import ssl
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
PEERS_BIN = base.PEERS_BIN
HOST = base.HOST
SERVER_CPU = base.SERVER_CPU
LOAD_CPU = base.LOAD_CPU
KEEPALIVE = base.KEEPALIVE
HELLO = b"Hello, World!"
SIZE_1M = 1024 * 1024
DURATION, REPEAT = 2, 3  # the defaults
HS_CLIENTS = 2  # tls_load processes at once
LOAD_SRC = os.path.join(HERE, "ref", "tls_load.c")
BUDGET = 20 * 60

# name -> (kind, packages in the peers venv, note)
SERVERS = {
    "nginx": ("nginx", [], "the distribution's nginx, master + 1 worker "
              "process, `return 200 \"Hello, World!\"` on / and a 1 MiB "
              "static file on /1m, `ssl_protocols TLSv1.3`, "
              "`ssl_session_cache shared:SSL:1m`, session tickets on (its "
              "default), `listen ... ssl deferred`"),
    "lichen": ("lichen", [], "python -m lichen --certfile --keyfile "
               "--keepalive 30 --defer-accept 1 (native mode)"),
    "lichen-gevent": ("lichen", [], "the same with --gevent (gevent mode)"),
    "gunicorn-sync": ("gunicorn", ["gunicorn"], "gunicorn --certfile "
                      "--keyfile -k sync -w 1 (no keep-alive: a connection, "
                      "so a TLS handshake, per request)"),
    "gunicorn-gevent": ("gunicorn", ["gunicorn", "gevent"],
                        "gunicorn --certfile --keyfile -k gevent -w 1 "
                        "--keep-alive 30"),
    "gevent.pywsgi": ("pywsgi", ["gevent"], "gevent.pywsgi.WSGIServer(..., "
                      "ssl_context=ctx, log=None), one SSLContext "
                      "(create_default_context(Purpose.CLIENT_AUTH)) for "
                      "all connections; no TCP_NODELAY"),
    "granian": ("granian", ["granian"], "granian --interface wsgi --workers "
                "1 --ssl-certificate --ssl-keyfile (TLS by rustls)"),
    "gevent.pywsgi+nodelay": ("pywsgi", ["gevent"], "gevent.pywsgi as "
                              "above with TCP_NODELAY on each accepted "
                              "socket (hello only)"),
}
# gevent.pywsgi sets no TCP_NODELAY: with Nagle's algorithm a keep-alive
# connection waits for the client's delayed ACK (~40 ms) between
# responses, which leaves the server mostly idle and inflates its CPU per
# request; the +nodelay row is the same server with only TCP_NODELAY set,
# where it matters: hello (a connection per request and 1 MiB responses
# are not held back by it)
ONLY_IN = {"gevent.pywsgi+nodelay": {"hello"}}
PYTHON_PEERS = ["gunicorn-sync", "gunicorn-gevent", "gevent.pywsgi",
                "gevent.pywsgi+nodelay", "granian"]

SCENARIOS = {
    "hello": dict(kind="wrk", path="/", conns=10,
                  title="hello over TLS, keep-alive, 10 connections (wrk)"),
    "handshake": dict(kind="handshake", mode="new",
                      title="a new TLS 1.3 connection per request, full "
                      "handshake (tls_load new, %d at once)" % HS_CLIENTS),
    "resumed": dict(kind="handshake", mode="resume",
                    title="a new TLS 1.3 connection per request, session "
                    "resumed (tls_load resume, %d at once)" % HS_CLIENTS),
    "1m": dict(kind="wrk", path="/1m", conns=10,
               title="1 MiB responses over TLS, keep-alive, 10 connections "
               "(wrk)"),
}

# the run's temporary directory: cert.pem, key.pem and the 1 MiB file "1m"
work = None


def cert_file():
    return os.path.join(work, "cert.pem")


def key_file():
    return os.path.join(work, "key.pem")


def big_file():
    return os.path.join(work, "1m")


def load_bin():
    return os.path.join(work, "tls_load")


# --------------------------------------------------------------- setup

def check_system():
    missing = [t for t in ("wrk", "openssl", "taskset", "gcc")
               if shutil.which(t) is None]
    if not os.path.exists("/usr/include/openssl/ssl.h"):
        missing.append("libssl-dev")
    if missing:
        pkgs = {"wrk": "wrk", "openssl": "openssl", "taskset": "util-linux",
                "gcc": "gcc", "libssl-dev": "libssl-dev"}
        raise Abort("missing: %s\ninstall them with:\n    apt-get update && "
                    "apt-get install -y %s" % (", ".join(missing), " ".join(
                        pkgs[t] for t in missing)))
    if (os.cpu_count() or 1) < 2:
        raise Abort("needs at least 2 CPUs (server on CPU 0, load on CPU 1)")
    if not os.path.exists(LICHEN_PY):
        raise Abort("%s not found: run 'make venv' in %s" % (LICHEN_PY, ROOT))


def lichen_tls():
    """None when the project venv's lichen serves TLS (--certfile in its
    --help), else why not."""
    r = base.run([LICHEN_PY, "-m", "lichen", "--help"])
    if r.returncode:
        return "lichen does not start: " + (r.stderr.strip()[-200:])
    if "--certfile" not in r.stdout:
        return "n/a: this lichen has no TLS (no --certfile)"
    return None


def make_work():
    """A temporary directory readable by all (nginx's worker runs as nobody
    when the script runs as root) with the certificate, its key and the
    1 MiB file of random bytes (fixed seed)."""
    import random
    global work
    work = tempfile.mkdtemp(prefix="lichen-bench-tls-")
    os.chmod(work, 0o755)
    r = base.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", key_file(),
                  "-out", cert_file(), "-days", "2", "-subj", "/CN=localhost",
                  "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
    if r.returncode:
        raise Abort("openssl req failed: " + r.stderr[-500:])
    with open(big_file(), "wb") as f:
        f.write(random.Random(20240601).randbytes(SIZE_1M))
    for p in (cert_file(), key_file(), big_file()):
        os.chmod(p, 0o644)
    # the handshake load client, built for this run
    r = base.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-o",
                  load_bin(), LOAD_SRC, "-lssl", "-lcrypto"])
    if r.returncode:
        raise Abort("could not build the TLS load client:\n" + r.stderr)


def versions(peers, servers):
    code = ("import importlib.metadata as m, ssl, sys\n"
            "for p in sys.argv[1:]:\n"
            "    try: print(p, m.version(p))\n"
            "    except Exception: print(p, '-')\n"
            "print('ssl', ssl.OPENSSL_VERSION.split()[1])\n")
    out = {}
    own = ["lichen"] + (["gevent"] if "lichen-gevent" in servers else [])
    for py, pkgs in ((LICHEN_PY, own), (PEERS_PY, peers)):
        if not os.path.exists(py) or (py == PEERS_PY and not peers):
            continue
        r = base.run([py, "-c", code] + pkgs)
        for line in r.stdout.splitlines():
            k, v = line.split(" ", 1)
            if k == "ssl":
                k = ("OpenSSL of the Python ssl module" if py == LICHEN_PY
                     else "OpenSSL of the peers' ssl module")
            elif py == LICHEN_PY and k != "lichen":
                k += " (lichen)"
            out[k] = v
    if "nginx" in servers and base.nginx_bin():
        r = base.run([base.nginx_bin(), "-V"])
        m = re.search(r"nginx/(\S+)", r.stderr)
        out["nginx"] = m.group(1) if m else "?"
        m = re.search(r"running with OpenSSL (\S+)", r.stderr) or \
            re.search(r"built with OpenSSL (\S+)", r.stderr)
        if m:
            out["nginx"] += " (OpenSSL %s)" % m.group(1)
    so = [f for f in os.listdir(os.path.join(ROOT, "lichen"))
          if f.startswith("_lichen") and f.endswith(".so")]
    if so and shutil.which("ldd"):
        r = base.run(["ldd", os.path.join(ROOT, "lichen", so[0])])
        m = re.search(r"(libssl\S*) => (\S+)", r.stdout)
        if m:
            out["lichen's libssl"] = os.path.realpath(m.group(2))
    r = base.run(["wrk", "-v"])
    m = re.search(r"wrk (\S+)", r.stdout + r.stderr)
    out["wrk"] = m.group(1) if m else "?"
    r = base.run(["openssl", "version"])
    out["OpenSSL (tls_load, certificates)"] = " ".join(
        r.stdout.split()[1:2])
    return out


def machine():
    line = base.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("flags"):
                    have = set(ln.split(":", 1)[1].split())
                    flags = ", CPU flags: %s" % " ".join(
                        x for x in ("aes", "pclmulqdq", "avx2", "sha_ni",
                                    "vaes") if x in have)
                    break
    except OSError:
        pass
    return line + flags


# --------------------------------------------------------------- servers

NGINX_CONF = """\
# bench/tls.py: nginx over TLS
daemon off;
master_process on;
worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log warn;
events {
    worker_connections 10000;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout %(keepalive)d;
    keepalive_requests 1000000;
    default_type text/plain;
    client_body_temp_path %(tmp)s/client_body;
    proxy_temp_path %(tmp)s/proxy;
    fastcgi_temp_path %(tmp)s/fastcgi;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:SSL:1m;
    ssl_session_tickets on;
    server {
        listen %(addr)s ssl deferred;
        location = / {
            return 200 "Hello, World!";
        }
        location = /1m {
            root %(root)s;
            default_type application/octet-stream;
        }
    }
}
"""


def server_cmd(name, port, tmp):
    kind = SERVERS[name][0]
    addr = "%s:%d" % (HOST, port)
    pin = ["taskset", "-c", SERVER_CPU]
    if kind == "nginx":
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF % dict(tmp=tmp, addr=addr, root=work,
                                      cert=cert_file(), key=key_file(),
                                      keepalive=KEEPALIVE))
        return pin + [base.nginx_bin(), "-p", tmp, "-c", conf,
                      "-e", os.path.join(tmp, "error.log")]
    if kind == "lichen":
        cmd = [LICHEN_PY, "-m", "lichen", "tls_apps:app", "--bind", addr,
               "--certfile", cert_file(), "--keyfile", key_file(),
               "--keepalive", str(KEEPALIVE), "--defer-accept", "1",
               "--backlog", "4096"]
        if name == "lichen-gevent":
            cmd.append("--gevent")
        return pin + cmd
    if kind == "gunicorn":
        return pin + [os.path.join(PEERS_BIN, "gunicorn"), "-k",
                      name.split("-", 1)[1], "-w", "1", "--bind", addr,
                      "--certfile", cert_file(), "--keyfile", key_file(),
                      "--keep-alive", str(KEEPALIVE),
                      "--worker-connections", "10000", "--backlog", "4096",
                      "--log-level", "warning", "tls_apps:app"]
    if kind == "pywsgi":
        return pin + [PEERS_PY, os.path.join(HERE, "tls_apps.py"), name,
                      HOST, str(port), cert_file(), key_file()]
    if kind == "granian":
        return pin + [os.path.join(PEERS_BIN, "granian"), "--interface",
                      "wsgi", "--host", HOST, "--port", str(port),
                      "--workers", "1", "--no-access-log", "--backlog",
                      "4096", "--backpressure", "10000",
                      "--ssl-certificate", cert_file(), "--ssl-keyfile",
                      key_file(), "tls_apps:app"]
    raise ValueError(name)


def get(port, path, timeout=5):
    """(status, body) of one GET over https, the certificate verified."""
    ctx = ssl.create_default_context(cafile=cert_file())
    c = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body
    finally:
        c.close()


def tls_params(port):
    """What a default OpenSSL client negotiates with the server: protocol,
    cipher and key exchange group (openssl s_client)."""
    try:
        r = subprocess.run(["openssl", "s_client", "-connect",
                            "%s:%d" % (HOST, port)],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "s_client did not finish"
    out = r.stdout + r.stderr
    m = re.search(r"New, (\S+), Cipher is (\S+)", out)
    k = re.search(r"(?:Server|Peer) Temp Key: ([^,\n]+)", out)
    if not m:
        return "s_client: no session (%s)" % out.strip()[-120:]
    return "%s %s%s" % (m.group(1).rstrip(","), m.group(2),
                        ", " + k.group(1) if k else "")


class Server(base.Server):
    """A server of SERVERS over TLS, started and checked with GETs over
    https (the certificate verified); the rest (stop, tail, alive) is
    bench/run.py's."""

    def start(self, procs):
        env = dict(os.environ, BENCH_TLS_FILE=big_file())
        if SERVERS[self.name][0] == "nginx":
            self.tmp = tempfile.mkdtemp(prefix="lichen-bench-nginx-")
            os.chmod(self.tmp, 0o755)
        self.proc = subprocess.Popen(
            server_cmd(self.name, self.port, self.tmp), cwd=HERE,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True, preexec_fn=base.raise_nofile, env=env)
        procs.append(self.proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed("exited at start with status %s: %s"
                             % (self.proc.returncode, self.tail()))
            try:
                status, body = get(self.port, "/", 2)
            except ConnectionRefusedError:
                time.sleep(0.05)
                continue
            except (OSError, http.client.HTTPException) as e:
                time.sleep(0.1)
                last = e
                if time.monotonic() + 0.2 > deadline:
                    raise Failed("GET / over https: %s (%s)"
                                 % (last, self.tail()))
                continue
            if status != 200 or body != HELLO:
                raise Failed("GET /: status %d, %r" % (status, body[:80]))
            return
        raise Failed("did not answer within 20 s: " + self.tail())

    def complaints(self):
        """What the server logged of errors and warnings (its output, and
        nginx's error log) over the run: a line for the page, or None."""
        self.log.seek(0)
        data = self.log.read()
        if self.tmp:
            try:
                with open(os.path.join(self.tmp, "error.log"), "rb") as f:
                    data += f.read()
            except OSError:
                pass
        bad = [ln.strip() for ln in data.decode(errors="replace")
               .splitlines() if re.search(
                   r"error|warn|exception|traceback|critical|reset",
                   ln, re.I)]
        if not bad:
            return None
        return "logged %d line%s of errors or warnings, the last: `%s`" % (
            len(bad), "" if len(bad) == 1 else "s", bad[-1][-300:])

    def check(self):
        """The routes the run uses, answered right?  A list of
        problems."""
        problems = []
        paths = ["/1m"] + (["/file1m"] if SERVERS[self.name][0] ==
                           "lichen" else [])
        with open(big_file(), "rb") as f:
            data = f.read()
        for path in paths:
            want = data if path == "/file1m" or self.name == "nginx" \
                else b"x" * SIZE_1M
            try:
                status, body = get(self.port, path, 10)
                if status != 200 or body != want:
                    problems.append("GET %s: status %d, %d bytes%s" % (
                        path, status, len(body), " (not the right ones)"
                        if len(body) == len(want) else ""))
            except (OSError, http.client.HTTPException) as e:
                problems.append("GET %s: %s" % (path, e))
        return problems


# --------------------------------------------------------------- load

def wrk(port, path, conns, duration):
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c%d" % conns,
           "-d%ds" % duration, "--timeout", "5s", "--latency",
           "https://%s:%d%s" % (HOST, port, path)]
    try:
        r = base.run(cmd, timeout=duration + 30)
    except subprocess.TimeoutExpired:
        raise Failed("wrk did not finish")
    out = r.stdout
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if r.returncode or not m:
        raise Failed("wrk failed: " + (out + r.stderr)[-300:])
    res = {"requests": int(m.group(1)),
           "rps": float(re.search(r"Requests/sec:\s+([\d.]+)",
                                  out).group(1))}
    for q in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % q, out, re.M)
        res["p" + q] = base.to_seconds(m.group(1)) if m else None
    if not res["p50"]:
        res["p50"] = res["p99"] = None
    fails, errs = 0, []
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    if m:
        for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(v):
                errs.append("%s %s" % (k, v))
        fails += int(m.group(1)) + int(m.group(3)) + int(m.group(4))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        fails += int(m.group(1))
        errs.append("non-2xx %s" % m.group(1))
    res["failures"] = fails
    res["errors"] = ", ".join(errs)
    return res


def handshakes(port, mode, duration, clients):
    """clients tls_load processes at once (bench/ref/tls_load.c), each
    opening one TLS 1.3 connection after the other for duration seconds,
    one GET / on each, the response checked; mode "new" (full handshakes)
    or "resume" (each offering the newest session of the ones before).
    Their counts: connections, of which resumed, failed ones, bytes of a
    response."""
    cmd = ["taskset", "-c", LOAD_CPU, load_bin(), HOST, str(port),
           str(duration), mode]
    procs = [subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(clients)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=duration + 30)
            outs.append((p.returncode, out, err))
    except subprocess.TimeoutExpired:
        raise Failed("tls_load did not finish")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    res = {"requests": 0, "resumed": 0, "full": 0, "bytes": None,
           "failures": 0, "errors": ""}
    for rc, out, err in outs:
        m = re.search(r"done connections=(\d+) resumed=(\d+) full=(\d+) "
                      r"errors=(\d+) bytes=(\d+) seconds=\S+ "
                      r"tickets_on_resumed=(\d+)", out)
        if rc or not m:
            raise Failed("tls_load failed (status %s): %s" % (
                rc, " | ".join((out + err).strip().splitlines()[-3:])[-300:]))
        n, resumed, full, errors, size, tickets = map(int, m.groups())
        res["tickets_on_resumed"] = res.get("tickets_on_resumed", 0) + \
            tickets
        res["requests"] += n
        res["resumed"] += resumed
        res["full"] += full
        res["failures"] += errors
        res["bytes"] = size
    if res["failures"]:
        res["errors"] = "%d connections failed" % res["failures"]
    return res


def task_ticks(cpu):
    """(ticks of processes, all ticks) of one CPU since boot: user, nice
    and system time (irq and softirq time, the network's work, is in no
    process's account), as bench/ws.py reads them."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu%s " % cpu):
                v = [int(x) for x in line.split()[1:]]
                return v[0] + v[1] + v[2], sum(v[:8])
    return 0, 0


def measure(server, scn, path, duration, warm):
    sc = SCENARIOS[scn]
    sid = server.proc.pid
    if warm:
        if sc["kind"] == "wrk":
            wrk(server.port, path, sc["conns"], 1)
        else:
            handshakes(server.port, sc["mode"], 1, 1)
    cpu0 = base.cpu_seconds(sid)
    load0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    ticks0 = task_ticks(SERVER_CPU)
    if sc["kind"] == "wrk":
        res = wrk(server.port, path, sc["conns"], duration)
    else:
        res = handshakes(server.port, sc["mode"], duration, HS_CLIENTS)
    elapsed = time.monotonic() - t0
    res["cpu"] = base.cpu_seconds(sid) - cpu0
    ticks1 = task_ticks(SERVER_CPU)
    load1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the load tool's own CPU (wrk, tls_load: children waited for)
    res["load_busy"] = (load1.ru_utime + load1.ru_stime - load0.ru_utime
                        - load0.ru_stime) / elapsed
    if sc["kind"] == "handshake":
        res["rps"] = res["requests"] / elapsed if elapsed > 0 else 0
        res["p50"] = res["p99"] = None
    if ticks1[1] > ticks0[1]:
        # CPU 0's processes beyond the server: other work of the machine
        busy = (ticks1[0] - ticks0[0]) / (ticks1[1] - ticks0[1])
        res["others0"] = max(0.0, busy - res["cpu"] / elapsed)
    if not server.alive():
        raise Failed("server exited during the run: " + server.tail())
    res["cpu_per_req"] = res["cpu"] / res["requests"] if res["requests"] \
        else None
    return res


# --------------------------------------------------------------- rounds

def rows_of(name, scn):
    """The rows a server has in a scenario: (label, path)."""
    sc = SCENARIOS[scn]
    if scn not in ONLY_IN.get(name, (scn,)):
        return []
    if sc["kind"] == "handshake":
        return [(name, "/")]
    if scn == "1m" and SERVERS[name][0] == "lichen":
        return [(name, "/1m"), (name + " file_wrapper", "/file1m")]
    return [(name, sc["path"])]


def estimate_seconds(servers, scenarios, duration, repeat, warm):
    """A little over what the runs take on a 2-core VM: a wrk run the
    measured time and 0.5 s (its warm-up, first round only: 1.5 s); a
    tls_load run the same; a server's start and checks 3 s."""
    per_round = first = 0.0
    for scn in scenarios:
        n = sum(len(rows_of(s, scn)) for s in servers)
        per_round += n * (duration + 0.5)
        first += n * 1.5 if warm else 0
    return int(per_round * repeat + first + 3 * len(servers))


def run_rounds(servers, scenarios, args, procs, results, skip, problems,
               negotiated):
    live = {}
    failed = {}  # server -> why (did not start): its rows say so

    def server_of(name):
        server = live.get(name)
        if server is not None and server.alive():
            return server
        if server is not None:
            log("%s exited (%s); starting it again"
                % (name, server.tail()))
            problems.setdefault(name, []).append(
                "exited during the run and was started again: "
                + server.tail())
            server.stop()
        server = live[name] = Server(name)
        try:
            server.start(procs)
        except Failed as e:
            failed[name] = "did not start: %s" % e
            server.stop()
            del live[name]
            return None
        if name not in negotiated:
            negotiated[name] = tls_params(server.port)
            problems.setdefault(name, []).extend(server.check())
        return server

    try:
        for scn in scenarios:
            rows = []
            for name in servers:
                for label, path in rows_of(name, scn):
                    if name in skip:
                        results.setdefault(scn, {})[label] = {
                            "skip": skip[name]}
                    else:
                        rows.append((label, name, path))
            runs = {label: [] for label, _, _ in rows}
            row_failed = {}
            for rnd in range(args.repeat):
                k = rnd % len(rows) if rows else 0
                for label, name, path in rows[k:] + rows[:k]:
                    if label in row_failed or name in failed:
                        continue
                    server = server_of(name)
                    if server is None:
                        continue
                    log("%-28s %-9s %s..." % (
                        label, scn, "" if args.repeat == 1 else
                        "round %d of %d " % (rnd + 1, args.repeat)))
                    try:
                        runs[label].append(measure(
                            server, scn, path, args.duration,
                            rnd == 0 and not args.quick))
                    except Failed as e:
                        row_failed[label] = "failed: %s" % e
            for label, name, _ in rows:
                why = row_failed.get(label) or failed.get(name)
                if why or not runs[label]:
                    results.setdefault(scn, {})[label] = {
                        "skip": why or "no run"}
                    continue
                res = base.median_run(runs[label])
                res.setdefault("cpu_rounds", [runs[label][0].get(
                    "cpu_per_req")])
                res["all_runs"] = runs[label]
                results.setdefault(scn, {})[label] = res
    finally:
        for name, server in live.items():
            complaints = server.complaints()
            if complaints:
                problems.setdefault(name, []).append(complaints)
            server.stop()


# --------------------------------------------------------------- report

def measured(results, scn, label):
    r = results.get(scn, {}).get(label)
    return None if r is None or "skip" in r else r


def table(scn, labels, results):
    sc = SCENARIOS[scn]
    rows = results.get(scn, {})
    lichen, nginx = measured(results, scn, "lichen"), \
        measured(results, scn, "nginx")
    spread = any(len(r.get("cpu_runs") or []) > 1 for r in rows.values())
    if sc["kind"] == "wrk":
        head = ["server", "req/s", "p50", "p99", "CPU us/req"]
    else:
        head = ["server", "handshakes/s", "CPU us/handshake"]
    if spread:
        head.append("CPU min-max")
    if sc["kind"] == "handshake":
        head += ["handshakes per CPU-second", "resumed", "response bytes"]
    head += ["vs lichen", "vs nginx", "failures"]
    lines = ["### %s: %s" % (scn, sc["title"]), "",
             "| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]
    notes = []
    for label in labels:
        r = rows.get(label)
        if r is None:
            continue
        if "skip" in r:
            notes.append("%s: %s" % (label, r["skip"]))
            continue
        cpr = r.get("cpu_per_req")
        cells = [label, "%.0f" % r["rps"]]
        if sc["kind"] == "wrk":
            cells += [base.fmt_lat(r["p50"]), base.fmt_lat(r["p99"])]
        cells.append("%.1f" % (cpr * 1e6) if cpr else "-")
        if spread:
            v = r.get("cpu_runs") or []
            cells.append("%.1f-%.1f" % (min(v) * 1e6, max(v) * 1e6)
                         if v else "-")
        if sc["kind"] == "handshake":
            runs = r["all_runs"]
            n = sum(x["requests"] for x in runs)
            resumed = sum(x["resumed"] for x in runs)
            cells += ["%.0f" % (1 / cpr) if cpr else "-",
                      "%.0f %%" % (100.0 * resumed / n) if n else "-",
                      str(r.get("bytes") or "-")]
            tickets = sum(x.get("tickets_on_resumed", 0) for x in runs)
            if sc["mode"] == "resume" and n and resumed < n:
                why = ""
                if label == "gunicorn-sync":
                    why = (": its sync worker makes a new SSLContext for "
                           "every connection (gunicorn.sock.ssl_wrap_socket"
                           "), with ticket keys of its own, so no ticket "
                           "it gave opens again")
                elif resumed and tickets == 0:
                    why = (": its resumed connections brought no new "
                           "session ticket (0 on %d), and a TLS 1.3 ticket "
                           "is used once by OpenSSL's client (as by "
                           "browsers), so each resumed connection is "
                           "followed by a full handshake" % resumed)
                notes.append("%s: %d of %d connections (all rounds) were "
                             "resumed, the others full handshakes%s"
                             % (label, resumed, n, why))
        cells += [base.fmt_ratio(base.ratio(r, lichen)),
                  base.fmt_ratio(base.ratio(r, nginx)), str(r["failures"])]
        lines.append("| " + " | ".join(cells) + " |")
        if r.get("errors"):
            notes.append("%s: %s" % (label, r["errors"]))
        # (wrk over TLS spins while it waits for a response: its CPU says
        # nothing of whether it was the limit)
        if (r.get("load_busy") or 0) > 0.9 and sc["kind"] == "handshake":
            notes.append("%s (the run shown): tls_load took %.0f %% of "
                         "CPU %s: the load was the limit of the rate, not "
                         "the server" % (label, r["load_busy"] * 100,
                                         LOAD_CPU))
    others = sorted(r["others0"] for r in rows.values()
                    if r.get("others0") is not None)
    if others and others[-1] > 0.05:
        notes.append("other processes of the machine took %.0f to %.0f %% "
                     "of CPU %s (the servers') during the runs shown "
                     "(median %.0f %%)" % (
                         others[0] * 100, others[-1] * 100, SERVER_CPU,
                         statistics.median(others) * 100))
    if scn == "hello" and "gunicorn-sync" in rows and \
            "skip" not in rows["gunicorn-sync"]:
        notes.append("gunicorn-sync has no keep-alive: it closes the "
                     "connection after each response, and wrk opens a "
                     "new one (offering the session of the one before), so "
                     "each of its requests is a TLS handshake as well; "
                     "its sync worker builds a new SSLContext, "
                     "certificate and key loaded, for every connection, "
                     "which resumes no session (see resumed)")
    if notes:
        lines += [""] + ["- " + n for n in notes]
    return "\n".join(lines)


def targets(results):
    rows = []

    def add(what, v, bound, ok):
        rows.append("| %s | %s | %s | %s |" % (
            what, "- (not measured)" if v is None else "%.3fx" % v, bound,
            "-" if v is None else "yes" if ok else "**no**"))

    me = measured(results, "hello", "lichen")
    if "hello" in results:
        v = base.ratio(me, measured(results, "hello", "nginx"))
        add("hello: lichen's CPU per request vs nginx's", v, "<= 1.20x",
            v is not None and v <= 1.2)
        for peer in PYTHON_PEERS:
            if peer not in results["hello"]:
                continue
            v = base.ratio(me, measured(results, "hello", peer))
            add("hello: lichen's CPU per request vs %s's" % peer, v,
                "<= 0.50x", v is not None and v <= 0.5)
    for scn in ("handshake", "resumed"):
        if scn not in results:
            continue
        # handshakes per CPU-second: the inverse of CPU per handshake
        v = base.ratio(measured(results, scn, "nginx"),
                       measured(results, scn, "lichen"))
        add("%s: lichen's handshakes per CPU-second vs nginx's" % scn, v,
            ">= 0.90x", v is not None and v >= 0.9)
    # every connection that offers a ticket is resumed
    r = measured(results, "resumed", "lichen")
    if r:
        n = sum(x["requests"] for x in r["all_runs"])
        share = sum(x["resumed"] for x in r["all_runs"]) / n if n else 0
        rows.append("| resumed: lichen's connections resumed | %.0f %% | "
                    "100 %% | %s |" % (share * 100, "yes" if share >= 1
                                       else "**no**"))
    if not rows:
        return []
    return ["### Targets", "",
            "CPU per request ratios are lichen's over the other's (below "
            "1 = less CPU); handshakes per CPU-second, lichen's over "
            "nginx's (above 1 = more handshakes for the CPU); each the "
            "median of the ratios within each round.", "",
            "| target | measured | bound | met |",
            "|---|---:|---:|---:|"] + rows


def command_line(args, servers, scenarios):
    cmd = "python3 bench/tls.py"
    if args.only:
        cmd += " --only " + ",".join(servers)
    if args.scenarios:
        cmd += " --scenarios " + ",".join(scenarios)
    if args.quick:
        cmd += " --quick"
    else:
        if args.duration != DURATION:
            cmd += " --duration %d" % args.duration
        if args.repeat != REPEAT:
            cmd += " --repeat %d" % args.repeat
    if args.name != "tls":
        cmd += " --name " + args.name
    return cmd


# --------------------------------------------------------------- main

def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="",
                    help="comma-separated servers (default: all): "
                    + ", ".join(SERVERS))
    ap.add_argument("--scenarios", default="",
                    help="comma-separated scenarios (default: all): "
                    + ", ".join(SCENARIOS))
    ap.add_argument("--duration", type=int, default=DURATION,
                    help="seconds of each measured run (default %d)"
                    % DURATION)
    ap.add_argument("--repeat", type=int, default=REPEAT,
                    help="measure each scenario in N rounds across the "
                    "servers (default %d)" % REPEAT)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: --duration 1 --repeat 1, no "
                    "warm-up runs (about a minute)")
    ap.add_argument("--out", default=base.OUT_DIR,
                    help="directory of NAME.md (default docs/benchmarks)")
    ap.add_argument("--name", default="tls",
                    help="base name of the page (default tls)")
    ap.add_argument("--list", action="store_true",
                    help="list servers and scenarios, and exit")
    return ap


def main():
    ap = parser()
    args = ap.parse_args()
    if args.list:
        return base.list_choices(SERVERS, SCENARIOS)
    if args.quick:
        args.duration, args.repeat = 1, 1
    servers = [s.strip() for s in args.only.split(",") if s.strip()] \
        or list(SERVERS)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] \
        or list(SCENARIOS)
    servers = base.chosen(ap, servers, SERVERS, "server")
    scenarios = base.chosen(ap, scenarios, SCENARIOS, "scenario")
    if args.duration < 1:
        ap.error("--duration must be positive")
    if args.repeat < 1:
        ap.error("--repeat must be positive")
    estimate = estimate_seconds(servers, scenarios, args.duration,
                                args.repeat, not args.quick)
    if estimate > BUDGET:
        ap.error("that would take about %d min; the budget is %d min: lower "
                 "--duration or --repeat, or choose fewer servers or "
                 "scenarios" % (estimate // 60, BUDGET // 60))

    procs = []

    def on_term(signum, frame):
        raise KeyboardInterrupt

    base.signal.signal(base.signal.SIGTERM, on_term)
    base.signal.signal(base.signal.SIGINT, base.signal.default_int_handler)
    base.raise_nofile()
    try:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    except OSError:
        pass
    started = time.monotonic()
    results, skip, install_failed = {}, {}, {}
    problems, negotiated = {}, {}
    try:
        check_system()
        peers = sorted({p for s in servers for p in SERVERS[s][1]})
        if peers:
            install_failed = base.install_peers(peers)
        for s in servers:
            bad = [p for p in SERVERS[s][1] if install_failed.get(p)]
            if bad:
                skip[s] = "not installed (%s)" % install_failed[bad[0]]
        if "nginx" in servers and not base.nginx_bin():
            skip["nginx"] = ("not installed: apt-get install -y nginx")
            log("nginx is missing: apt-get install -y nginx (its rows are "
                "skipped)")
        why = lichen_tls()
        if why:
            log("lichen: " + why)
            for s in servers:
                if SERVERS[s][0] == "lichen":
                    skip[s] = why
        make_work()
        mline = machine()
        vers = versions(peers, servers)
        log("about %d min of measurements" % (estimate // 60 + 1))
        run_rounds(servers, scenarios, args, procs, results, skip, problems,
                   negotiated)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Abort as e:
        log("error: %s" % e)
        return 1
    finally:
        for p in procs:
            base.stop(p)
        if work:
            shutil.rmtree(work, ignore_errors=True)

    elapsed = time.monotonic() - started
    labels = []
    for s in servers:
        for scn in scenarios:
            for label, _ in rows_of(s, scn):
                if label not in labels:
                    labels.append(label)
    sections = [table(scn, labels, results) for scn in scenarios]
    goals = targets(results)
    if goals:
        sections.insert(0, "\n".join(goals))
    notes = []
    for name, probs in problems.items():
        if probs:
            notes.append("%s: %s" % (name, "; ".join(probs)))
    for pkg, why in install_failed.items():
        if why:
            notes.append("%s: not installed: %s" % (pkg, why))
    vline = ", ".join("%s %s" % kv for kv in vers.items())
    neg = "; ".join("%s: %s" % (n, negotiated[n]) for n in servers
                    if n in negotiated)
    header = [
        "# TLS benchmark", "",
        "Machine: " + mline, "",
        "Versions: " + vline, "",
        "Command: `%s` (%.0f min, %s)" % (
            command_line(args, servers, scenarios), elapsed / 60,
            time.strftime("%Y-%m-%d")), "",
        "Servers: " + "; ".join("**%s**: %s" % (n, SERVERS[n][2])
                                for n in servers) + ". The WSGI servers "
        "run bench/tls_apps.py (bench/apps.py's application, and /file1m: "
        "a 1 MiB file through wsgi.file_wrapper).", "",
        "Certificate: ECDSA P-256, self-signed, made at start with `openssl "
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256` (PKCS#8 "
        "key), the same for every server. What a default OpenSSL client "
        "negotiates with each (`openssl s_client`): %s." % (neg or "-"), "",
        "Each server is one process pinned to CPU %s (nginx and gunicorn: "
        "master + 1 worker, granian: its process tree; the CPU of all the "
        "server's processes is counted, user + kernel); the load runs on "
        "CPU %s. **CPU us/req** = the server's CPU time over the run / "
        "requests completed. hello and 1m: `wrk -t1 -c10` over https, "
        "keep-alive. handshake and resumed: %d processes of "
        "bench/ref/tls_load.c (C, OpenSSL) at once, each opening one "
        "connection after the other: a TCP connection, a TLS 1.3 "
        "handshake, `GET /` with `Connection: close`, the response read "
        "and checked, a close_notify, the server's close awaited; `new` "
        "makes every handshake a full one (X25519 and the server's ECDSA "
        "signature), `resume` offers the newest session ticket the server "
        "gave (a PSK with a new X25519 exchange: no signature), and counts "
        "the connections the server resumed: the **resumed** column. "
        "**handshakes per CPU-second** is the inverse of the CPU per "
        "handshake (TCP connection and request included). Measured runs "
        "last %d s%s. **vs lichen** and **vs nginx**: the row's CPU per "
        "request over lichen's and nginx's (above 1.00x = more CPU)%s." % (
            SERVER_CPU, LOAD_CPU, HS_CLIENTS, args.duration,
            "" if args.quick else ", after a warm-up run in the first round",
            "" if args.repeat == 1 else
            "; each scenario was measured in %d rounds, a run of every "
            "server per round with the servers up side by side, the run "
            "of median CPU per request shown (**CPU min-max**: the spread) "
            "and the ratios the medians of the ratios within each round"
            % args.repeat), ""]
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
