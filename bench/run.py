#!/usr/bin/env python3
"""The benchmark suite: lichen beside its peers and a C reference server.

    python3 bench/run.py [--only SERVER,...] [--scenarios NAME,...]
                         [--duration SECONDS] [--repeat N] [--list]

Each server runs as one process (gunicorn: master + 1 worker) pinned to CPU 0
with taskset; the load tools (wrk, ab, and this script itself) run on CPU 1.
Per server and scenario it records requests/s, p50 and p99 latency, and the
server's CPU time per request: the CPU time of every process of the server's
session (the process CPU-time clock, in nanoseconds; utime+stime from
/proc/PID/stat where it cannot be read) after the measured run minus before
it, divided by the requests completed.  The servers stay up side by side and
each scenario is measured in rounds, a run of every server per round (one
round by default, N with --repeat N): the run of median CPU per request is
reported, with the spread of the N.  It writes markdown tables
and a chart of CPU per request to docs/benchmarks/NAME.md and NAME.png
(--name, default results).  See bench/README.md.

Standard library only; matplotlib (for the chart) runs in bench/.venv-peers.
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LICHEN_PY = os.path.join(ROOT, ".venv", "bin", "python")
PEERS_VENV = os.path.join(HERE, ".venv-peers")
PEERS_BIN = os.path.join(PEERS_VENV, "bin")
PEERS_PY = os.path.join(PEERS_BIN, "python")
REF_SRC = os.path.join(HERE, "ref", "ref_server.c")
REF_BIN = os.path.join(HERE, "ref", "ref_server")
OUT_DIR = os.path.join(ROOT, "docs", "benchmarks")
HOST = "127.0.0.1"
SERVER_CPU = "0"
LOAD_CPU = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
KEEPALIVE = 30  # server keep-alive timeout, where a server has the option
IDLE_CONNS = 5000
AB_N, AB_C = 10000, 1000
# long I/O: connections, and the application's wait per request; at most
# LONGIO_CONNS / delay requests per second can be served (20,000/s)
LONGIO_CONNS, LONGIO_DELAY_MS = 1000, 50
LONGIO_LIMIT = LONGIO_CONNS * 1000 // LONGIO_DELAY_MS
BUDGET = 20 * 60  # seconds: the whole default run must stay under this
# --baseline REV: that revision of lichen, checked out and built here, runs
# beside this one as "lichen-base"
BASELINE_DIR = os.path.join(HERE, ".baseline")
baseline = None  # the checkout's directory, once made
# the static-file scenarios: the files, made at start in a temporary
# directory (random bytes, fixed seed) that every static server serves
# under /static/
STATIC_FILES = {"1k.bin": 1024, "1m.bin": 1024 * 1024}
static_dir = None  # that directory, while a static scenario is in the run
# whitenoise for whitenoise-lichen, out of the project venv: pip install
# --target here (gitignored with the peers venv), on PYTHONPATH of that
# server only
LICHEN_SITE = os.path.join(PEERS_VENV, "lichen-site")
NGINX_WORKER_CONNECTIONS = 10000

# --------------------------------------------------------------- servers
# name -> (how it is started, package in the peers venv or None, note)
SERVERS = {
    "c-ref": ("ref", None, "bench/ref/ref_server.c, gcc -O2: canned hello "
              "response, no Python (the floor)"),
    "lichen": ("lichen", None, "python -m lichen"),
    "lichen-gevent": ("lichen", None, "python -m lichen --gevent (gevent "
                      "mode: monkey-patched, served from gevent's hub)"),
    "lichen-base": ("lichen", None, "python -m lichen, the --baseline "
                    "revision"),
    "nginx": ("nginx", "nginx", "nginx (the distribution's), 1 worker "
              "process, sendfile on (static scenarios only)"),
    "nginx+cache": ("nginx", "nginx", "the same with open_file_cache, as "
                    "lichen's --static keeps files open (static scenarios "
                    "only)"),
    "bjoern": ("launch", "bjoern", "bjoern.run"),
    "fastwsgi": ("launch", "fastwsgi", "fastwsgi.run"),
    "meinheld": ("launch", "meinheld", "meinheld.server.run"),
    "granian": ("granian", "granian", "granian --interface wsgi --workers 1"),
    "pyuwsgi": ("pyuwsgi", "pyuwsgi", "pyuwsgi --http-socket, 1 process, "
                "no master"),
    "gunicorn-sync": ("gunicorn", "gunicorn", "gunicorn -k sync -w 1"),
    "gunicorn-gthread": ("gunicorn", "gunicorn",
                         "gunicorn -k gthread -w 1 --threads 4"),
    "gunicorn-gevent": ("gunicorn", "gunicorn", "gunicorn -k gevent -w 1"),
    "gevent.pywsgi": ("launch", "gevent", "gevent.pywsgi.WSGIServer, "
                      "log=None"),
    "gevent.pywsgi+nodelay": ("launch", "gevent",
                              "the same with TCP_NODELAY on each socket"),
    "waitress": ("launch", "waitress", "waitress.serve, 4 threads"),
    "whitenoise-gunicorn": ("gunicorn", ("gunicorn", "whitenoise"),
                            "WhiteNoise(app) under gunicorn -k gthread -w 1 "
                            "--threads 4 (static scenarios only)"),
    "whitenoise-lichen": ("lichen", ("whitenoise", "whitenoise@lichen"),
                          "WhiteNoise(app) under python -m lichen, no "
                          "--static (static scenarios only)"),
}
# what a server needs that pip does not put into the peers venv: the
# distribution's nginx, and whitenoise where the project venv's lichen
# finds it (LICHEN_SITE)
NOT_PEERS = {"nginx", "whitenoise@lichen"}
LAUNCH_NAME = {"gevent.pywsgi": "gevent", "gevent.pywsgi+nodelay":
               "gevent-nodelay"}
# servers that can run 2 worker processes from their own options
TWO_WORKERS = {"granian", "pyuwsgi", "gunicorn-sync", "gunicorn-gthread",
               "gunicorn-gevent", "fastwsgi"}
NO_TWO_WORKERS = {
    "lichen": "n/a: no --workers yet",
    "lichen-base": "n/a: no --workers yet",
    "lichen-gevent": "n/a: no --workers yet",
    "c-ref": "n/a: one process by design",
}
# the servers that run each request in a greenlet, so that an application
# waiting in gevent.sleep lets the others go on (the long-I/O scenario)
GEVENT_SERVERS = {"lichen-gevent", "gunicorn-gevent", "gevent.pywsgi",
                  "gevent.pywsgi+nodelay"}
# the servers of the static-file scenarios: lichen's --static, nginx, and
# WhiteNoise (the Python way) under gunicorn and under lichen; the last
# three take part in those scenarios only
STATIC_SERVERS = {"lichen", "lichen-gevent", "lichen-base", "nginx",
                  "nginx+cache", "whitenoise-gunicorn", "whitenoise-lichen"}
STATIC_ONLY = {"nginx", "nginx+cache", "whitenoise-gunicorn",
               "whitenoise-lichen"}
# lichen servers whose engine has no --static (found at start)
no_static = {}
PEER_PACKAGES = ["gevent", "gunicorn", "bjoern", "fastwsgi", "meinheld",
                 "granian", "pyuwsgi", "waitress", "whitenoise",
                 "matplotlib"]
IMPORT_NAME = {"pyuwsgi": "pyuwsgi", "gunicorn": "gunicorn"}

# --------------------------------------------------------------- scenarios
# name -> dict(kind, title, ...)
SCENARIOS = {
    "hello": dict(kind="wrk", path="/", conns=100,
                  title="hello, keep-alive, 100 connections (wrk)"),
    "idle": dict(kind="idle", path="/",
                 title="%d idle keep-alive connections, one request each"
                 % IDLE_CONNS),
    "pipeline": dict(kind="wrk", path="/", conns=100, script="pipeline.lua",
                     title="hello, 16 requests pipelined per write, "
                     "100 connections (wrk + pipeline.lua)"),
    "ab": dict(kind="ab", path="/",
               title="connection per request: ab -n %d -c %d (HTTP/1.0, "
               "no keep-alive)" % (AB_N, AB_C)),
    "10k": dict(kind="wrk", path="/10k", conns=100,
                title="10 KiB response, keep-alive, 100 connections"),
    "1m": dict(kind="wrk", path="/1m", conns=10,
               title="1 MiB response, keep-alive, 10 connections"),
    "stream": dict(kind="wrk", path="/stream", conns=100,
                   title="streamed response: generator of 100 x 1 KiB "
                   "(chunked), 100 connections"),
    "post": dict(kind="wrk", path="/echo", conns=10, script="post.lua",
                 title="1 MiB POST echoed back, keep-alive, 10 connections "
                 "(wrk + post.lua)"),
    "workers2": dict(kind="wrk", path="/", conns=100, workers=2,
                     title="two workers: hello, keep-alive, 100 connections, "
                     "2 worker processes (all on CPU 0)"),
    "longio": dict(kind="wrk", path="/sleep50", conns=LONGIO_CONNS,
                   gevent=True,
                   title="long I/O: the application waits %d ms in "
                   "gevent.sleep, keep-alive, %d connections (gevent "
                   "servers only)" % (LONGIO_DELAY_MS, LONGIO_CONNS)),
    "static-1k": dict(kind="wrk", path="/static/1k.bin", conns=100,
                      static=True,
                      title="static file of 1 KiB, keep-alive, 100 "
                      "connections"),
    "static-1m": dict(kind="wrk", path="/static/1m.bin", conns=10,
                      static=True,
                      title="static file of 1 MiB, keep-alive, 10 "
                      "connections"),
}
# the C reference answers hello requests only
REF_SCENARIOS = {"hello", "idle", "pipeline", "ab"}
NOT_YET = []  # TLS has its own page: bench/tls.py, docs/benchmarks/tls.md


class Abort(Exception):
    pass


class Failed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------- setup

def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def check_system():
    missing = [t for t in ("wrk", "ab", "taskset", "gcc")
               if shutil.which(t) is None]
    pkgs = {"wrk": "wrk", "ab": "apache2-utils", "taskset": "util-linux",
            "gcc": "gcc"}
    apt = [pkgs[t] for t in missing]
    if not os.path.exists("/usr/include/ev.h"):
        apt.append("libev-dev")
    if apt:
        raise Abort("missing system packages: %s\ninstall them with:\n"
                    "    apt-get update && apt-get install -y %s"
                    % (", ".join(apt), " ".join(apt)))
    if (os.cpu_count() or 1) < 2:
        raise Abort("needs at least 2 CPUs (server on CPU 0, load on CPU 1)")
    if not os.path.exists(LICHEN_PY):
        raise Abort("%s not found: run 'make venv' in %s" % (LICHEN_PY, ROOT))
    r = run([LICHEN_PY, "-c", "import lichen._lichen"])
    if r.returncode:
        raise Abort("lichen is not importable from .venv; run 'make build'\n"
                    + r.stderr)


def importable(pkg):
    if not os.path.exists(PEERS_PY):
        return False
    mod = IMPORT_NAME.get(pkg, pkg)
    r = run([PEERS_PY, "-c", "import %s" % mod])
    return r.returncode == 0


def install_peers(wanted):
    """Installs what is missing; returns {package: reason} of failures."""
    if not os.path.exists(PEERS_PY):
        log("creating %s ..." % os.path.relpath(PEERS_VENV))
        subprocess.run([sys.executable, "-m", "venv", PEERS_VENV], check=True)
    missing = [p for p in wanted if not importable(p)]
    failed = {}
    if not missing:
        return failed
    pip = [PEERS_PY, "-m", "pip", "install", "-q"]
    log("installing into %s: %s ..." % (os.path.relpath(PEERS_VENV),
                                        " ".join(missing)))
    together = [p for p in missing if p != "meinheld"]
    if together:
        subprocess.run(pip + together, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    for p in missing:
        if importable(p):
            continue
        r = run(pip + [p])
        if r.returncode and p == "meinheld":
            # meinheld 1.0.2 pins greenlet<0.5, which no longer builds on
            # current Pythons; its own C code builds against greenlet 3
            r2 = run(pip + ["greenlet>=3"])
            r2 = run(pip + ["--no-deps", p])
            if importable(p):
                log("meinheld: its pinned greenlet<0.5 does not build; "
                    "installed with --no-deps against greenlet 3")
                continue
            r = r2
        if not importable(p):
            lines = [ln for ln in (r.stderr or "").splitlines()
                     if "error" in ln.lower() and "WARNING" not in ln]
            failed[p] = (lines[-1].strip() if lines else
                         "pip exit status %d" % r.returncode)[:200]
            log("could not install %s: %s" % (p, failed[p]))
    return failed


def packages(name):
    """What a server needs installed: names in the peers venv, or in
    NOT_PEERS."""
    p = SERVERS[name][1]
    return [] if not p else [p] if isinstance(p, str) else list(p)


def lichen_site_has_whitenoise():
    r = run([LICHEN_PY, "-c", "import whitenoise"],
            env=dict(os.environ, PYTHONPATH=LICHEN_SITE))
    return r.returncode == 0


def install_not_peers(wanted, failed):
    """nginx (checked, not installed: apt's) and whitenoise for the
    project venv's lichen; adds to failed what is missing."""
    if "nginx" in wanted and not nginx_bin():
        failed["nginx"] = ("no nginx binary; install it with: apt-get "
                           "install -y nginx")
        log("nginx is missing: apt-get install -y nginx (its rows are "
            "skipped)")
    if "whitenoise@lichen" in wanted and not lichen_site_has_whitenoise():
        if failed.get("whitenoise"):
            failed["whitenoise@lichen"] = failed["whitenoise"]
            return
        # the version of the peers venv, so that both WhiteNoise servers
        # run the same code
        r = run([PEERS_PY, "-c", "import importlib.metadata as m;"
                 "print(m.version('whitenoise'))"])
        spec = "whitenoise==" + r.stdout.strip() if not r.returncode \
            else "whitenoise"
        log("installing %s into %s (for the project venv's lichen) ..."
            % (spec, os.path.relpath(LICHEN_SITE)))
        r = run([LICHEN_PY, "-m", "pip", "install", "-q", "--target",
                 LICHEN_SITE, spec])
        if not lichen_site_has_whitenoise():
            lines = [ln for ln in (r.stderr or "").splitlines()
                     if "error" in ln.lower() and "WARNING" not in ln]
            failed["whitenoise@lichen"] = (
                lines[-1].strip() if lines else
                "pip exit status %d" % r.returncode)[:200]
            log("could not install whitenoise for lichen: %s"
                % failed["whitenoise@lichen"])


def nginx_bin():
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
         if os.access(p, os.X_OK)), None)


def lichen_static_missing(servers):
    """{lichen server: why not} for the lichen servers whose engine has no
    --static (the --baseline revision may predate it)."""
    missing = {}
    for name in servers:
        if SERVERS[name][0] != "lichen" or name not in STATIC_SERVERS \
                or name in STATIC_ONLY:
            continue
        env = dict(os.environ, PYTHONPATH=baseline) \
            if name == "lichen-base" else None
        r = run([LICHEN_PY, "-m", "lichen", "--help"], env=env)
        if not re.search(r"--static(?![-\w])", r.stdout):
            missing[name] = "n/a: this lichen has no --static"
    return missing


def make_static_dir():
    """The files of the static scenarios, random bytes (fixed seed), in a
    new temporary directory readable by all (nginx's worker runs as
    nobody when the script runs as root)."""
    import random
    where = tempfile.mkdtemp(prefix="lichen-bench-static-")
    os.chmod(where, 0o755)
    rnd = random.Random(20240601)
    for fname, size in STATIC_FILES.items():
        path = os.path.join(where, fname)
        with open(path, "wb") as f:
            f.write(rnd.randbytes(size))
        os.chmod(path, 0o644)
    return where


def static_body(fname):
    with open(os.path.join(static_dir, fname), "rb") as f:
        return f.read()


def build_ref():
    if (os.path.exists(REF_BIN)
            and os.path.getmtime(REF_BIN) >= os.path.getmtime(REF_SRC)):
        return
    log("building %s ..." % os.path.relpath(REF_BIN))
    r = run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-o", REF_BIN,
             REF_SRC])
    if r.returncode:
        raise Abort("could not build the C reference server:\n" + r.stderr)


def make_baseline(rev):
    """Check out rev of this repository into bench/.baseline/REV (once) and
    build its extension in place, with the project venv's Python."""
    r = run(["git", "-C", ROOT, "rev-parse", "--verify", rev + "^{commit}"])
    if r.returncode:
        raise Abort("--baseline: no such revision %r" % rev)
    commit = r.stdout.strip()
    where = os.path.join(BASELINE_DIR, commit[:12])
    if not os.path.isdir(where):
        log("checking out %s into %s ..." % (rev, os.path.relpath(where)))
        os.makedirs(BASELINE_DIR, exist_ok=True)
        r = run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f",
                 where, commit])
        if r.returncode:
            raise Abort("--baseline: git worktree add failed:\n" + r.stderr)
    if not any(f.startswith("_lichen") and f.endswith(".so")
               for f in os.listdir(os.path.join(where, "lichen"))):
        log("building the baseline's engine ...")
        r = run([LICHEN_PY, "setup.py", "build_ext", "--inplace"], cwd=where)
        if r.returncode:
            raise Abort("--baseline: the build failed:\n" + r.stderr[-2000:])
    return where


def versions(peers, lichen_gevent=False, nginx=False):
    """Versions of what runs: the gevent that lichen-gevent runs on is the
    project venv's, "gevent (lichen)"; whitenoise-lichen's whitenoise is
    the peers' version (install_not_peers)."""
    code = ("import importlib.metadata as m, sys\n"
            "for p in sys.argv[1:]:\n"
            "    try: print(p, m.version(p))\n"
            "    except Exception: print(p, '-')\n")
    out = {}
    own = ["lichen", "greenlet"] + (["gevent"] if lichen_gevent else [])
    for py, pkgs in ((LICHEN_PY, own), (PEERS_PY, peers + ["greenlet"])):
        if not os.path.exists(py):
            continue
        r = run([py, "-c", code] + pkgs)
        for line in r.stdout.splitlines():
            k, v = line.split(" ", 1)
            if py == LICHEN_PY and k != "lichen":
                k += " (lichen)"
            out[k] = v
    if nginx:
        r = run([nginx_bin(), "-v"])
        m = re.search(r"nginx/(\S+)", r.stdout + r.stderr)
        out["nginx"] = m.group(1) if m else "?"
    r = run(["wrk", "-v"])
    m = re.search(r"wrk (\S+)", r.stdout + r.stderr)
    out["wrk"] = m.group(1) if m else "?"
    r = run(["ab", "-V"])
    m = re.search(r"Version (\S+)", r.stdout)
    out["ab"] = m.group(1).rstrip(",") if m else "?"
    r = run(["gcc", "-dumpfullversion"])
    out["gcc"] = r.stdout.strip()
    return out


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    r = run([LICHEN_PY, "-c", "import platform;"
             "print(platform.python_version())"])
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = "%.0f GiB" % (kib / 1048576)
    except (OSError, ValueError, IndexError):
        pass
    return ("%s, %d cores, %s RAM, Linux %s, Python %s"
            % (model, os.cpu_count(), mem, platform.release(),
               r.stdout.strip()))


# --------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


NGINX_CONF = """\
# bench/run.py: nginx for the static-file scenarios
daemon off;
master_process on;
worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log warn;
events {
    worker_connections %(conns)d;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout %(keepalive)d;
    keepalive_requests 1000000;
%(cache)s    types {
        application/octet-stream bin;
    }
    default_type application/octet-stream;
    client_body_temp_path %(tmp)s/client_body;
    proxy_temp_path %(tmp)s/proxy;
    fastcgi_temp_path %(tmp)s/fastcgi;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    server {
        listen %(addr)s;
        location /static/ {
            alias %(root)s/;
        }
    }
}
"""


def server_cmd(name, port, workers, tmp=None):
    """The command line of a server; tmp: a directory of its own (nginx's
    configuration, pid file and error log)."""
    kind = SERVERS[name][0]
    addr = "%s:%d" % (HOST, port)
    pin = ["taskset", "-c", SERVER_CPU]
    if kind == "ref":
        return pin + [REF_BIN, HOST, str(port)]
    if kind == "nginx":
        conf = os.path.join(tmp, "nginx.conf")
        # nginx+cache: open files kept as lichen's --static keeps them (256
        # by default, checked against the path after a second)
        cache = "" if name == "nginx" else (
            "    open_file_cache max=256 inactive=60s;\n"
            "    open_file_cache_valid 1s;\n")
        with open(conf, "w") as f:
            f.write(NGINX_CONF % dict(tmp=tmp, addr=addr, root=static_dir,
                                      keepalive=KEEPALIVE, cache=cache,
                                      conns=NGINX_WORKER_CONNECTIONS))
        # -e: the error log before the configuration is read
        return pin + [nginx_bin(), "-p", tmp, "-c", conf,
                      "-e", os.path.join(tmp, "error.log")]
    if kind == "lichen":
        app = "apps:whitenoise_app" if name in STATIC_ONLY else "apps:app"
        cmd = [LICHEN_PY, "-m", "lichen", app, "--bind", addr,
               "--keepalive", str(KEEPALIVE), "--defer-accept", "1"]
        if name == "lichen-gevent":
            cmd.append("--gevent")
        # only when the run has a static scenario: the other runs keep
        # their command line of before
        if static_dir and name in STATIC_SERVERS and \
                name not in STATIC_ONLY and name not in no_static:
            cmd += ["--static", "/static=" + static_dir]
        return pin + cmd
    if kind == "launch":
        cmd = [PEERS_PY, os.path.join(HERE, "launch.py"),
               LAUNCH_NAME.get(name, name), HOST, str(port)]
        if workers > 1:
            cmd.append(str(workers))
        return pin + cmd
    if kind == "granian":
        return pin + [os.path.join(PEERS_BIN, "granian"), "--interface",
                      "wsgi", "--host", HOST, "--port", str(port),
                      "--workers", str(workers), "--no-access-log",
                      "--backlog", "4096", "--backpressure", "10000",
                      "apps:app"]
    if kind == "pyuwsgi":
        return pin + [os.path.join(PEERS_BIN, "pyuwsgi"), "--http-socket",
                      addr, "--module", "apps:app", "--processes",
                      str(workers), "--disable-logging", "--listen", "4096",
                      "--buffer-size", "16384"]
    if kind == "gunicorn":
        # whitenoise-gunicorn: the gthread worker (keep-alive; the sync
        # worker has none), as gunicorn-gthread
        wclass = "gthread" if name == "whitenoise-gunicorn" \
            else name.split("-", 1)[1]
        cmd = [os.path.join(PEERS_BIN, "gunicorn"), "-k", wclass, "-w",
               str(workers), "--bind", addr, "--keep-alive", str(KEEPALIVE),
               "--worker-connections", "10000", "--backlog", "4096",
               "--log-level", "warning"]
        if wclass == "gthread":
            cmd += ["--threads", "4"]
        app = "apps:whitenoise_app" if name in STATIC_ONLY else "apps:app"
        return pin + cmd + [app]
    raise ValueError(name)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def session_pids(sid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        # fields[0] is field 3 (state); field 6 is the session id
        if int(fields[3]) == sid:
            pids.append((int(d), fields))
    return pids


def process_clock(pid):
    """Linux's id of the CPU-time clock of a whole process (all its threads,
    those gone too), as clock_getcpuclockid(3) would give it."""
    cid = ((~pid) << 3 | 2) & 0xFFFFFFFF  # CPUCLOCK_SCHED
    return cid - (1 << 32) if cid >= 1 << 31 else cid


def cpu_seconds(sid):
    """CPU time of every process of the server's session, in seconds: the
    scheduler's own nanosecond account of each, not utime+stime, whose
    10 ms clock ticks are 4% of a 10,000-connection ab run (utime+stime
    where the clock cannot be read)."""
    total = 0.0
    for pid, f in session_pids(sid):
        try:
            total += time.clock_gettime(process_clock(pid))
        except OSError:
            total += (int(f[11]) + int(f[12])) / CLK_TCK
    return total


def cpu_ticks(cpu):
    """(busy, all) clock ticks of one CPU since boot, every process
    counted: busy is all but idle and iowait (steal, the time the host
    gave to others, counts as busy: the server could not have it)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu%s " % cpu):
                v = [int(x) for x in line.split()[1:]]
                return sum(v[:8]) - v[3] - v[4], sum(v[:8])
    return 0, 0


def rss_kib(sid):
    # field 24 is rss in pages
    return sum(int(f[21]) for _, f in session_pids(sid)) * PAGE_KIB


class Server:
    def __init__(self, name, workers=1):
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = None
        self.tmp = None

    def start(self, procs):
        env = dict(os.environ)
        if static_dir:
            env["BENCH_STATIC_DIR"] = static_dir  # apps.whitenoise_app
        if self.name == "lichen-base":
            env["PYTHONPATH"] = baseline
        if self.name == "whitenoise-lichen":
            env["PYTHONPATH"] = LICHEN_SITE
        if SERVERS[self.name][0] == "nginx":
            self.tmp = tempfile.mkdtemp(prefix="lichen-bench-nginx-")
            os.chmod(self.tmp, 0o755)
        self.proc = subprocess.Popen(
            server_cmd(self.name, self.port, self.workers, self.tmp),
            cwd=HERE, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=self.log, start_new_session=True, preexec_fn=raise_nofile,
            env=env)
        procs.append(self.proc)
        deadline = time.monotonic() + 20
        # nginx serves the static directory only: it is asked for a file
        path, want = ("/static/1k.bin", static_body("1k.bin")) \
            if SERVERS[self.name][0] == "nginx" else ("/", b"Hello, World!")
        url = "http://%s:%d%s" % (HOST, self.port, path)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed("exited at start with status %s: %s"
                             % (self.proc.returncode, self.tail()))
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    body = resp.read()
                if body != want:
                    raise Failed("unexpected body of %s: %r"
                                 % (path, body[:80]))
                # with several workers, let all of them come up
                time.sleep(0.5 if self.workers > 1 else 0.1)
                return
            except (OSError, ValueError):
                time.sleep(0.05)
        raise Failed("did not answer within 20 s: " + self.tail())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self):
        self.log.seek(0)
        data = self.log.read()
        if self.tmp:  # nginx: its error log
            try:
                with open(os.path.join(self.tmp, "error.log"), "rb") as f:
                    data += f.read()
            except OSError:
                pass
        lines = data[-3000:].decode(errors="replace")
        return " | ".join(ln for ln in lines.splitlines()[-4:] if ln.strip())

    def stop(self):
        stop(self.proc)
        self.log.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 3), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            pass
    # reap leftovers of the session (workers whose master is gone)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------- checks

# the response head of each static server for /static/1k.bin, as read at
# its route check: a note under the static tables
static_heads = {}


def check_static(name, port):
    """The static files served whole, with status 200?  Returns a list of
    problems, and keeps the response head in static_heads."""
    import http.client
    problems = []
    for fname in STATIC_FILES:
        path = "/static/" + fname
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=5)
            c.request("GET", path)
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status != 200 or data != static_body(fname):
                problems.append("GET %s: status %d, %d bytes%s" % (
                    path, r.status, len(data), "" if len(data) !=
                    STATIC_FILES[fname] else " (not the file's)"))
            if fname == "1k.bin":
                static_heads[name] = [
                    "HTTP/1.1 %d %s" % (r.status, r.reason)] + [
                    "%s: %s" % kv for kv in r.getheaders()]
        except (OSError, http.client.HTTPException) as e:
            problems.append("GET %s: %s" % (path, e))
    return problems


def check_routes(port, greenlets=False, app=True):
    """Each route answered right?  Returns a list of problems.  The long
    I/O route is checked on the servers that run it (greenlets); app:
    False for a server that serves static files only."""
    import http.client
    problems = []
    checks = [("GET", "/10k", None, 10240), ("GET", "/1m", None, 1048576),
              ("GET", "/stream", None, 102400),
              ("POST", "/echo", b"z" * 100000, 100000)]
    if greenlets:
        checks.append(("GET", "/sleep50", None, 13))
    if not app:
        checks = []
    for method, path, body, size in checks:
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=5)
            c.request(method, path, body=body)
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status != 200 or len(data) != size or (
                    body is not None and data != body):
                problems.append("%s %s: status %d, %d bytes" % (
                    method, path, r.status, len(data)))
        except (OSError, http.client.HTTPException) as e:
            problems.append("%s %s: %s" % (method, path, e))
    return problems


# --------------------------------------------------------------- load

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def to_seconds(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(port, sc, duration):
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c%d" % sc["conns"],
           "-d%ds" % duration, "--timeout", "5s", "--latency"]
    if sc.get("script"):
        cmd += ["-s", os.path.join(HERE, sc["script"])]
    cmd.append("http://%s:%d%s" % (HOST, port, sc["path"]))
    try:
        r = run(cmd, timeout=duration + 30)
    except subprocess.TimeoutExpired:
        raise Failed("wrk did not finish")
    out = r.stdout
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if r.returncode or not m:
        raise Failed("wrk failed: " + (out + r.stderr)[-300:])
    res = {"requests": int(m.group(1))}
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    for q in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % q, out, re.M)
        res["p" + q] = to_seconds(m.group(1)) if m else None
    if not res["p50"]:
        res["p50"] = res["p99"] = None  # wrk recorded no latency
    if res["p99"] is not None and res["p50"] is not None \
            and res["p99"] < res["p50"]:
        # wrk prints 0.00us for p99 when its histogram overflows (it does
        # with pipelining): unknown, not zero
        res["p99"] = None
    fails = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    errs = []
    if m:
        # read errors are closed connections: a server that closes after
        # each response (no keep-alive) shows them without failing requests
        names = ("connect", "read", "write", "timeout")
        for k, v in zip(names, m.groups()):
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


def ab(port, n, c, timeout):
    cmd = ["taskset", "-c", LOAD_CPU, "ab", "-q", "-r", "-s", "10",
           "-n", str(n), "-c", str(c), "http://%s:%d/" % (HOST, port)]
    try:
        r = run(cmd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failed("ab did not finish within %d s" % timeout)
    out = r.stdout
    m = re.search(r"Complete requests:\s+(\d+)", out)
    if not m:
        raise Failed("ab failed: " + (out + r.stderr)[-300:])
    complete = int(m.group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    m = re.search(r"Non-2xx responses:\s+(\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    res = {"requests": complete - failed - non2xx, "failures": failed + non2xx,
           "errors": "%d failed, %d non-2xx, of %d" % (failed, non2xx,
                                                     complete)
           if failed or non2xx else ""}
    res["rps"] = float(re.search(r"Requests per second:\s+([\d.]+)",
                                 out).group(1))
    for q in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\d+)" % q, out, re.M)
        res["p" + q] = int(m.group(1)) / 1000 if m else None
    return res


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q / 100))]


def idle(server, n):
    """Opens n keep-alive connections, one request each, and keeps them."""
    req = ("GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
           % (HOST, server.port)).encode()
    # one connection first, so that lazily built state is not counted
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(req)
        s.recv(4096)
    time.sleep(0.3)
    sid = server.proc.pid
    rss0 = rss_kib(sid)
    cpu0 = cpu_seconds(sid)
    socks, lat = [], []
    ok = fails = 0
    t0 = time.monotonic()
    deadline = t0 + 20
    for i in range(n):
        if time.monotonic() > deadline:
            fails += n - i
            break
        t = time.monotonic()
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((HOST, server.port))
            s.sendall(req)
            data = b""
            while not data.endswith(b"Hello, World!"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.endswith(b"Hello, World!") and b" 200 " in data[:16]:
                ok += 1
                lat.append(time.monotonic() - t)
            else:
                fails += 1
        except OSError:
            fails += 1
        socks.append(s)
    elapsed = time.monotonic() - t0
    time.sleep(0.5)
    rss1 = rss_kib(sid)
    cpu1 = cpu_seconds(sid)
    held = 0
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) == b"":
                continue  # closed by the server
            held += 1
        except BlockingIOError:
            held += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    res = {"requests": ok, "rps": ok / elapsed if elapsed else 0,
           "p50": percentile(lat, 50), "p99": percentile(lat, 99),
           "failures": fails, "cpu": cpu1 - cpu0, "held": held,
           "rss_delta_kib": rss1 - rss0,
           "errors": "" if held == ok else
           "%d of %d connections still open at the end" % (held, ok)}
    res["rss_per_conn_kib"] = (rss1 - rss0) / held if held else None
    return res


def median_run(runs):
    """The run of median CPU per request among runs of one server and
    scenario, with the CPU per request of all of them in "cpu_runs"."""
    if len(runs) == 1:
        return runs[0]
    ok = sorted((r for r in runs if r.get("cpu_per_req")),
                key=lambda r: r["cpu_per_req"])
    res = dict(ok[(len(ok) - 1) // 2] if ok else runs[0])
    res["cpu_runs"] = [r["cpu_per_req"] for r in ok]
    res["cpu_rounds"] = [r.get("cpu_per_req") for r in runs]
    res["rps_rounds"] = [r["rps"] for r in runs]
    # Memory per idle connection only means something in the first run:
    # later ones reuse what the server's heap already grew to.
    if "rss_per_conn_kib" in runs[0]:
        res["rss_per_conn_kib"] = runs[0]["rss_per_conn_kib"]
        res["rss_delta_kib"] = runs[0].get("rss_delta_kib")
    return res


def runs_in(name, scn):
    """Whether a server takes part in a scenario."""
    if name == "c-ref" and scn not in REF_SCENARIOS:
        return False
    if SCENARIOS[scn].get("gevent") and name not in GEVENT_SERVERS:
        return False
    static = bool(SCENARIOS[scn].get("static"))
    if static and name not in STATIC_SERVERS:
        return False
    if not static and name in STATIC_ONLY:
        return False
    return scn != "workers2" or name in TWO_WORKERS


def arg_parser(doc, servers, scenarios, run, repeat, repeat_help, name,
               out_help):
    """The options the benchmark scripts share."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--only", default="",
                    help="comma-separated servers (default: all): "
                    + ", ".join(servers))
    ap.add_argument("--scenarios", default="",
                    help="comma-separated scenarios (default: all): "
                    + ", ".join(scenarios))
    ap.add_argument("--duration", type=int, default=5,
                    help="seconds of each measured %s run, after a 1 s "
                    "warm-up (default 5)" % run)
    ap.add_argument("--repeat", type=int, default=repeat, help=repeat_help)
    ap.add_argument("--out", default=OUT_DIR, help=out_help)
    ap.add_argument("--name", default=name,
                    help="base name of the page (default %s)" % name)
    ap.add_argument("--list", action="store_true",
                    help="list servers and scenarios, and exit")
    return ap


def command_line(script, args, servers, scenarios, repeat, name):
    """The command that makes this page, for the page: the options given
    that differ from the defaults (repeat, name)."""
    cmd = "python3 " + script
    if args.only:
        cmd += " --only " + ",".join(servers)
    if args.scenarios:
        cmd += " --scenarios " + ",".join(scenarios)
    if args.duration != 5:
        cmd += " --duration %d" % args.duration
    if args.repeat != repeat:
        cmd += " --repeat %d" % args.repeat
    if args.name != name:
        cmd += " --name " + args.name
    return cmd


def list_choices(servers, scenarios):
    """--list: the servers and the scenarios, a line each."""
    width = max(len(n) for n in list(servers) + list(scenarios)) + 1
    for n, (_, _, note) in servers.items():
        print("server   %-*s %s" % (width, n, note))
    for n, sc in scenarios.items():
        print("scenario %-*s %s" % (width, n, sc["title"]))
    return 0


def chosen(ap, wanted, known, what):
    """The names given (--only, --scenarios) in the order of known; an
    unknown one is the command line's error."""
    for s in wanted:
        if s not in known:
            ap.error("unknown %s %r (known: %s)" % (what, s, ", ".join(known)))
    return [s for s in known if s in wanted]


def check_length(ap, args, estimate):
    """--duration and --repeat make sense, and the run fits the budget."""
    if args.duration < 1:
        ap.error("--duration must be positive")
    if args.repeat < 1:
        ap.error("--repeat must be positive")
    if estimate > BUDGET:
        ap.error("that would take about %d min; the budget is %d min: lower "
                 "--duration or choose fewer servers or scenarios"
                 % (estimate // 60, BUDGET // 60))


def estimate_seconds(servers, scenarios, duration, repeat):
    """How long the measurements take, a little over: a wrk run lasts its
    1 s warm-up and the measured run, and about 0.1 s more (1.5 s
    counted); an ab or idle run 0.5 to 3 s (4 s counted); starting a
    server and checking its routes, under a second (3 s counted)."""
    per_round = 0.0
    for scn in scenarios:
        n = sum(1 for name in servers if runs_in(name, scn))
        wrk = SCENARIOS[scn]["kind"] == "wrk"
        per_round += n * (duration + 1.5 if wrk else 4)
    return int(per_round * repeat + 3 * len(servers))


def run_rounds(names, scns, workers, args, procs, results, install_failed,
               route_problems):
    """Measure each scenario in rounds: a run of every server, then the
    next round. The servers stay up side by side (idle but for the one
    measured), so each round meets the machine alike for all of them: a
    virtual machine's host can slow every run by a quarter for a while,
    and server after server, minutes apart, that showed up as a ratio. The
    order turns by one each round."""
    live = {}
    try:
        for scn in scns:
            who = []
            for name in names:
                if not runs_in(name, scn):
                    continue
                bad = [p for p in packages(name) if install_failed.get(p)]
                if bad:
                    results.setdefault(scn, {})[name] = {
                        "skip": "not installed (%s)" % install_failed[bad[0]]}
                    continue
                if SCENARIOS[scn].get("static") and name in no_static:
                    results.setdefault(scn, {})[name] = {
                        "skip": no_static[name]}
                    continue
                who.append(name)
            runs = {name: [] for name in who}
            failed = {}
            for rnd in range(args.repeat):
                k = rnd % len(who) if who else 0
                for name in who[k:] + who[:k]:
                    if name in failed:
                        continue
                    server = live.get(name)
                    if server is None or not server.alive():
                        if server is not None:
                            server.stop()
                        server = live[name] = Server(name, workers)
                        try:
                            server.start(procs)
                        except Failed as e:
                            failed[name] = "did not start: %s" % e
                            server.stop()
                            del live[name]
                            continue
                        if workers == 1 and name != "c-ref" and \
                                name not in route_problems:
                            route_problems[name] = check_routes(
                                server.port, name in GEVENT_SERVERS,
                                app=name not in STATIC_ONLY)
                            if static_dir and name in STATIC_SERVERS and \
                                    name not in no_static:
                                route_problems[name] += check_static(
                                    name, server.port)
                    log("%-22s %-9s %s..." % (
                        name, scn, "" if args.repeat == 1 else
                        "round %d of %d " % (rnd + 1, args.repeat)))
                    try:
                        runs[name].append(measure(server, scn, args.duration))
                    except Failed as e:
                        failed[name] = "failed: %s" % e
            for name in who:
                results.setdefault(scn, {})[name] = (
                    {"skip": failed[name]} if name in failed
                    else median_run(runs[name]))
    finally:
        for server in live.values():
            server.stop()


def measure(server, scn, duration):
    sc = SCENARIOS[scn]
    sid = server.proc.pid
    if sc["kind"] == "idle":
        res = idle(server, IDLE_CONNS)
    elif sc["kind"] == "ab":
        ab(server.port, 1000, 100, 60)  # warm-up
        cpu0 = cpu_seconds(sid)
        res = ab(server.port, AB_N, AB_C, 120)
        res["cpu"] = cpu_seconds(sid) - cpu0
    else:
        wrk(server.port, sc, 1)  # warm-up
        cpu0 = cpu_seconds(sid)
        busy0, all0 = cpu_ticks(SERVER_CPU)
        res = wrk(server.port, sc, duration)
        res["cpu"] = cpu_seconds(sid) - cpu0
        busy1, all1 = cpu_ticks(SERVER_CPU)
        # the server's CPU busy, whoever used it: the server or others
        res["cpu_busy"] = (busy1 - busy0) / (all1 - all0) \
            if all1 > all0 else None
    if not server.alive():
        raise Failed("server exited during the run: " + server.tail())
    res["cpu_per_req"] = res["cpu"] / res["requests"] if res["requests"] \
        else None
    return res


# --------------------------------------------------------------- report

def fmt_lat(sec):
    if sec is None:
        return "-"
    if sec < 1e-3:
        return "%.0f us" % (sec * 1e6)
    if sec < 1:
        return "%.2f ms" % (sec * 1e3)
    return "%.2f s" % sec


def ratio(r, base):
    """r's CPU per request over base's: with rounds, the median of the
    ratios within each round (a round's runs meet the machine alike),
    else the ratio of the figures."""
    if not r or not base:
        return None
    a, b = r.get("cpu_rounds"), base.get("cpu_rounds")
    if a and b and len(a) == len(b):
        rs = [x / y for x, y in zip(a, b) if x and y]
        if rs:
            return statistics.median(rs)
    x, y = r.get("cpu_per_req"), base.get("cpu_per_req")
    return x / y if x and y else None


def fmt_ratio(v):
    return "-" if v is None else "%.2fx" % v


def table(scn, servers, results):
    sc = SCENARIOS[scn]
    rows = results.get(scn, {})
    is_idle = sc["kind"] == "idle"
    # the second ratio: to the C reference, or in the static scenarios
    # (where it does not run) to nginx
    other, other_col = ("nginx", "vs nginx") if sc.get("static") \
        else ("c-ref", "vs C ref")
    head = ["server", "req/s", "p50", "p99", "CPU us/req", "vs lichen",
            other_col, "failures"]
    if is_idle:
        head.insert(5, "RSS KiB/conn")
    spread = any(r.get("cpu_runs") for r in rows.values())
    if spread:
        head.insert(5, "CPU min-max")
    lines = ["### %s: %s" % (scn, sc["title"]), "",
             "| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 1)]
    base = rows.get("lichen")
    ref = rows.get(other)
    if base is not None and "skip" in base:
        base = None
    if ref is not None and "skip" in ref:
        ref = None
    notes = []
    for name in servers:
        r = rows.get(name)
        if r is None:
            continue
        if "skip" in r:
            notes.append("%s: %s" % (name, r["skip"]))
            continue
        cpr = r.get("cpu_per_req")
        cells = [name, "%.0f" % r["rps"], fmt_lat(r["p50"]), fmt_lat(r["p99"]),
                 "%.2f" % (cpr * 1e6) if cpr is not None else "-",
                 fmt_ratio(ratio(r, base)), fmt_ratio(ratio(r, ref)),
                 str(r["failures"])]
        if is_idle:
            v = r.get("rss_per_conn_kib")
            cells.insert(5, "%.1f" % v if v is not None else "-")
        if spread:
            v = r.get("cpu_runs") or []
            cells.insert(5, "%.2f-%.2f" % (min(v) * 1e6, max(v) * 1e6)
                         if v else "-")
        lines.append("| " + " | ".join(cells) + " |")
        if r.get("errors"):
            notes.append("%s: %s" % (name, r["errors"]))
        hello = results.get("hello", {}).get(name, {}).get("rps")
        if scn == "pipeline" and hello and r["rps"] < hello / 4:
            notes.append("%s: pipelined requests are not served at full "
                         "rate (%.0f req/s vs %.0f without pipelining)"
                         % (name, r["rps"], hello))
    left = [n for n in servers if n not in rows and not runs_in(n, scn)
            and n not in STATIC_ONLY]
    if sc.get("static") and left:
        notes.append("not run for %s: no static file serving of their own "
                     "(the Python way, WhiteNoise, is measured under "
                     "gunicorn and under lichen)" % ", ".join(left))
    if scn == "static-1k" or (scn == "static-1m" and
                              "static-1k" not in results):
        for name in servers:
            h = static_heads.get(name)
            if h and name in rows and "skip" not in rows[name]:
                notes.append("%s's response head (%d bytes): %s" % (
                    name, sum(len(x) + 2 for x in h) + 2, "; ".join(
                        "`%s`" % x for x in h)))
    if sc.get("gevent") and left:
        notes.append("not run for %s: a server that does not run the "
                     "application in greenlets of a gevent hub would be "
                     "held (a thread of it, or all of it) by each "
                     "gevent.sleep for its %d ms"
                     % (", ".join(left), LONGIO_DELAY_MS))
    if notes:
        lines += [""] + ["- " + n for n in notes]
    return "\n".join(lines)


def measured(results, scn, name):
    r = results.get(scn, {}).get(name)
    return None if r is None or "skip" in r else r


def longio_why(r):
    """Why lichen-gevent's longio run r served what it did, from its
    figures."""
    cpr, rps = r["cpu_per_req"], r["rps"]
    need = cpr * LONGIO_LIMIT
    own = cpr * rps
    text = ("longio, lichen-gevent (the run shown): %.1f us of CPU per "
            "request, so %s req/s would take %.2f CPU of the one the server "
            "has; it was busy %.0f %% of the run"
            % (cpr * 1e6, "{:,}".format(LONGIO_LIMIT), need, own * 100))
    others = 0
    busy = r.get("cpu_busy")
    if busy is not None:
        others = max(0.0, busy - own)
        text += (" (CPU %s, every process counted: %.0f %%)"
                 % (SERVER_CPU, busy * 100))
    text += ". "
    if need > 0.9:
        return text + "The limit on this machine is CPU, not the wait."
    cycle = LONGIO_CONNS / rps
    text += ("A connection's request took %.1f ms (%d connections / %.0f "
             "req/s), %.1f ms more than the wait: time it waited for the "
             "server's one thread. "
             % (cycle * 1e3, LONGIO_CONNS, rps, cycle * 1e3 - LONGIO_DELAY_MS))
    if others > 0.1:
        text += ("Other processes of the machine took %.0f %% of that CPU "
                 "in the run. " % (others * 100))
    return text + (
        "wrk starts its connections together and they stay in step, so "
        "their requests come in waves and wait their turn: one request of "
        "each of the %d connections is %.1f ms of CPU at %.1f us each."
        % (LONGIO_CONNS, LONGIO_CONNS * cpr * 1e3, cpr * 1e6))


def targets(results):
    """The gevent mode's targets, from this run's figures: markdown lines,
    none when the run has no lichen-gevent row.  Bounds on CPU per request
    are on the ratios within each round, as in the tables."""
    rows = []

    def add(what, value, text, bound, ok):
        if value is None:
            if not bound:
                return
            text, ok = "- (not measured)", None
        rows.append("| %s | %s | %s | %s |" % (
            what, text, bound or "-",
            "-" if ok is None or not bound else "yes" if ok else "**no**"))

    def vs(scn, peer, bound, label):
        v = ratio(measured(results, scn, "lichen-gevent"),
                  measured(results, scn, peer))
        # three decimals: a ratio just over its bound must not print as it
        add("%s: CPU/req vs %s" % (scn, label), v,
            "-" if v is None else "%.3fx" % v,
            "<= %.2fx" % bound if bound else None,
            v is not None and v <= (bound or 0))

    extra = []
    if measured(results, "hello", "lichen-gevent"):
        vs("hello", "gunicorn-gevent", 0.2, "`gunicorn -k gevent`")
        vs("hello", "gevent.pywsgi", 0.2, "gevent.pywsgi")
        vs("hello", "gevent.pywsgi+nodelay", None,
           "gevent.pywsgi+nodelay")
        vs("hello", "lichen", 1.3, "lichen (native mode)")
    r = measured(results, "longio", "lichen-gevent")
    if r:
        for name in ("lichen-gevent", "gunicorn-gevent", "gevent.pywsgi",
                     "gevent.pywsgi+nodelay"):
            p = measured(results, "longio", name)
            rps = p and statistics.median(p.get("rps_rounds") or [p["rps"]])
            share = rps / LONGIO_LIMIT if rps else None
            add("longio: %s req/s, of the limit %s" % (
                name, "{:,}".format(LONGIO_LIMIT)), share,
                "%.0f (%.1f %%)" % (rps, share * 100) if share else "",
                ">= 90 %" if name == "lichen-gevent" else None,
                share is not None and share >= 0.9)
        vs("longio", "gunicorn-gevent", 0.2, "`gunicorn -k gevent`")
        vs("longio", "gevent.pywsgi", None, "gevent.pywsgi")
        vs("longio", "gevent.pywsgi+nodelay", None, "gevent.pywsgi+nodelay")
        cpr = r.get("cpu_per_req")
        if cpr and r["rps"]:
            extra.append(longio_why(r))
    if not rows:
        return []
    lines = ["### Targets: gevent mode", "",
             "lichen-gevent is `python -m lichen --gevent`. The CPU ratios "
             "are lichen-gevent's CPU per request over the other's, as "
             "**vs lichen** in the tables; the long-I/O rate is the median "
             "of the rounds' req/s, as a share of the most that %d "
             "connections each waiting %d ms per request allow (%s/s)."
             % (LONGIO_CONNS, LONGIO_DELAY_MS,
                "{:,}".format(LONGIO_LIMIT)), "",
             "| target | measured | bound | met |",
             "|---|---:|---:|---:|"] + rows
    if extra:
        lines += [""] + ["- " + e for e in extra]
    return lines


def static_targets(results):
    """The static files' targets: lichen's CPU per request at most 1.2x
    nginx's and at most a fifth of WhiteNoise's, under gunicorn and under
    lichen; markdown lines, none when lichen did not serve a static
    scenario."""
    rows = []
    for scn in ("static-1k", "static-1m"):
        if not measured(results, scn, "lichen"):
            continue
        for peer, bound, label in (
                ("nginx", 1.2, "nginx"),
                ("nginx+cache", None, "nginx+cache (like for like)"),
                ("whitenoise-gunicorn", 0.2, "WhiteNoise under gunicorn"),
                ("whitenoise-lichen", 0.2, "WhiteNoise under lichen")):
            v = ratio(measured(results, scn, "lichen"),
                      measured(results, scn, peer))
            # three decimals: a ratio just over its bound must not print
            # as it
            if v is None and bound is None:
                continue
            rows.append("| %s: CPU/req vs %s | %s | %s | %s |" % (
                scn, label, "- (not measured)" if v is None else
                "%.3fx" % v, "-" if bound is None else "<= %.2fx" % bound,
                "-" if v is None or bound is None else
                "yes" if v <= bound else "**no**"))
    if not rows:
        return []
    return ["### Targets: static files", "",
            "lichen is `python -m lichen --static /static=DIR`: the file "
            "is sent by the engine, in C, with sendfile. The ratios are "
            "lichen's CPU per request over the other's (the other's row "
            "in the tables shows the inverse in **vs lichen**).", "",
            "| target | measured | bound | met |",
            "|---|---:|---:|---:|"] + rows


def chart(results, servers, scenarios, path):
    data = {"servers": servers, "scenarios": scenarios,
            "titles": {s: SCENARIOS[s]["title"] for s in scenarios},
            "cpu_us": {s: {n: r["cpu_per_req"] * 1e6
                           for n, r in results.get(s, {}).items()
                           if r.get("cpu_per_req")} for s in scenarios}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        r = run([PEERS_PY, os.path.join(HERE, "plot.py"), f.name, path],
                timeout=120)
        if r.returncode:
            log("chart not written: " + r.stderr[-500:])
            return False
        return True
    finally:
        os.unlink(f.name)


# --------------------------------------------------------------- main

def main():
    global baseline, static_dir
    ap = arg_parser(__doc__, SERVERS, SCENARIOS, "wrk", 1,
                    "measure each scenario in N rounds across the servers "
                    "and report the median by CPU per request, with the "
                    "spread (default 1)", "results",
                    "directory of NAME.md and NAME.png (default "
                    "docs/benchmarks)")
    ap.add_argument("--baseline", metavar="REV",
                    help="also run lichen at git revision REV (checked out "
                    "and built in bench/.baseline) as lichen-base, side by "
                    "side with this tree's")
    args = ap.parse_args()
    if args.list:
        return list_choices(SERVERS, SCENARIOS)
    servers = [s.strip() for s in args.only.split(",") if s.strip()] \
        or [s for s in SERVERS if s != "lichen-base"]
    if args.baseline and "lichen-base" not in servers:
        servers.append("lichen-base")
    if "lichen-base" in servers and not args.baseline:
        ap.error("lichen-base runs the --baseline revision: give --baseline")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] \
        or list(SCENARIOS)
    servers = chosen(ap, servers, SERVERS, "server")
    scenarios = chosen(ap, scenarios, SCENARIOS, "scenario")
    estimate = estimate_seconds(servers, scenarios, args.duration,
                                args.repeat)
    check_length(ap, args, estimate)

    procs = []

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise_nofile()
    try:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    except OSError:
        pass
    started = time.monotonic()
    results = {}
    install_failed = {}
    route_problems = {}
    try:
        check_system()
        if args.baseline:
            baseline = make_baseline(args.baseline)
        # what the servers that run in the chosen scenarios need
        active = [s for s in servers if any(runs_in(s, c) for c in scenarios)]
        wanted = {p for s in active for p in packages(s)}
        peers = sorted(wanted - NOT_PEERS)
        install_failed = install_peers(peers + ["matplotlib"])
        install_not_peers(wanted, install_failed)
        if any(SCENARIOS[s].get("static") for s in scenarios) and \
                any(s in STATIC_SERVERS for s in active):
            static_dir = make_static_dir()
            no_static.update(lichen_static_missing(servers))
        if "c-ref" in servers:
            build_ref()
        mline = machine()
        vers = versions(peers, "lichen-gevent" in servers,
                        any(SERVERS[s][0] == "nginx" for s in active)
                        and not install_failed.get("nginx"))
        log("about %d min of measurements" % (estimate // 60 + 1))
        run_rounds(servers, [s for s in scenarios if s != "workers2"], 1,
                   args, procs, results, install_failed, route_problems)
        if "workers2" in scenarios:
            for name in servers:
                if name not in TWO_WORKERS:
                    results.setdefault("workers2", {})[name] = {
                        "skip": NO_TWO_WORKERS.get(
                            name, "n/a: no option for worker processes")}
            run_rounds([n for n in servers if n in TWO_WORKERS], ["workers2"],
                       2, args, procs, results, install_failed, {})
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Abort as e:
        log("error: %s" % e)
        return 1
    finally:
        for p in procs:
            stop(p)
        if static_dir:
            shutil.rmtree(static_dir, ignore_errors=True)

    elapsed = time.monotonic() - started
    cmd = command_line("bench/run.py", args, servers, scenarios, 1,
                       "results")
    if args.baseline:
        cmd += " --baseline " + args.baseline
    sections = [table(s, servers, results) for s in scenarios]
    for goals in (static_targets(results), targets(results)):
        if goals:
            sections.insert(0, "\n".join(goals))
    for what in NOT_YET:
        sections.append("### %s\n\nnot yet (capability missing)" % what)
    notes = []
    for name, probs in route_problems.items():
        if probs:
            notes.append("%s answered some routes wrongly: %s"
                         % (name, "; ".join(probs)))
    for pkg, why in install_failed.items():
        if why:
            notes.append("%s: not installed: %s" % (pkg, why))
    if vers.get("meinheld", "-") != "-" and \
            not vers.get("greenlet", "0.").startswith("0."):
        notes.append("meinheld %s requires greenlet<0.5, which no longer "
                     "builds on this Python: it is installed with pip "
                     "--no-deps and runs against greenlet %s"
                     % (vers["meinheld"], vers["greenlet"]))
    vline = ", ".join("%s %s" % kv for kv in vers.items())
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, args.name + ".png")
    have_chart = chart(results, servers, scenarios, png)
    header = [
        "# Benchmark results", "",
        "Machine: " + mline, "",
        "Versions: " + vline, "",
        "Command: `%s` (%.0f min, %s)" % (
            cmd, elapsed / 60, time.strftime("%Y-%m-%d")), "",
        "Each server is one process pinned to CPU %s (gunicorn and nginx: "
        "master + 1 worker, granian: its process tree; the CPU of all "
        "processes of the server is counted); the load (wrk -t1, ab, and "
        "the idle-connection client) runs on CPU %s. Measured runs last "
        "%d s after a 1 s warm-up%s. **CPU us/req** = server CPU time "
        "(user + kernel) over the run / requests completed; **vs lichen** "
        "and **vs C ref** (in the static-file scenarios **vs nginx**) "
        "divide it by lichen's and the C reference server's (nginx's) "
        "(above 1.00x = more CPU per request). **failures**: wrk "
        "connect/write/timeout errors and non-2xx responses, ab's failed "
        "requests, or idle connections not answered. See bench/README.md."
        % (
            SERVER_CPU, LOAD_CPU, args.duration,
            "" if args.repeat == 1 else
            "; each scenario was measured in %d rounds, a run of every "
            "server per round with the servers up side by side (so that a "
            "slow spell of the machine meets all of them alike), and the run "
            "of median CPU per request is shown, **CPU min-max** giving the "
            "spread (memory per idle connection: the first run); **vs "
            "lichen**, **vs C ref** and **vs nginx** are then the medians "
            "of the ratios "
            "within each round"
            % args.repeat), ""]
    if have_chart:
        header += ["![CPU us per request](%s.png)" % args.name, ""]
    if notes:
        header += ["Notes:", ""] + ["- " + n for n in notes] + [""]
    text = "\n".join(header) + "\n" + "\n\n".join(sections) + "\n"
    with open(os.path.join(args.out, args.name + ".md"), "w") as f:
        f.write(text)
    print(text)
    log("written to %s%s" % (os.path.relpath(os.path.join(args.out,
                                                           args.name + ".md")),
                             " and %s.png" % args.name if have_chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
