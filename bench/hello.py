#!/usr/bin/env python3
"""Hello-world benchmark: lichen beside bjoern and gevent.pywsgi, in one run.

    python3 bench/hello.py [--duration 10] [--connections 100] [--c1]

Each server runs as one process pinned to CPU 0; wrk runs pinned to CPU 1.
For each server: a warm-up of 2 s, then a measured wrk run.  Reported:
requests/s, p50 and p99 latency (from wrk --latency) and the server's CPU
time per request: utime+stime of the server process (from /proc/PID/stat)
after the measured run minus before it, divided by the requests wrk
completed.  The table is printed and written to docs/benchmarks/hello.md.
See bench/README.md.  Standard library only.
"""
import argparse
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LICHEN_PY = os.path.join(ROOT, ".venv", "bin", "python")
PEERS_VENV = os.path.join(HERE, ".venv-peers")
PEERS_PY = os.path.join(PEERS_VENV, "bin", "python")
OUT_MD = os.path.join(ROOT, "docs", "benchmarks", "hello.md")
HOST = "127.0.0.1"
WARMUP = 2
SERVER_CPU = "0"
LOAD_CPU = "1"
TOTAL_BUDGET = 180  # seconds; the whole run must stay under ~3 minutes
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("lichen", "bjoern", "gevent.pywsgi", "gevent.pywsgi+nodelay")


class Abort(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup

def check_tools(need_libev):
    missing = [t for t in ("wrk", "taskset") if shutil.which(t) is None]
    pkgs = {"wrk": "wrk", "taskset": "util-linux"}
    apt = [pkgs[t] for t in missing]
    if need_libev and not os.path.exists("/usr/include/ev.h"):
        apt.append("libev-dev")
    if apt:
        raise Abort("missing system packages: %s\ninstall them with:\n"
                    "    apt-get update && apt-get install -y %s"
                    % (", ".join(apt), " ".join(apt)))
    if (os.cpu_count() or 1) < 2:
        raise Abort("needs at least 2 CPUs (server on CPU 0, wrk on CPU 1)")


def peers_ok():
    if not os.path.exists(PEERS_PY):
        return False
    r = subprocess.run([PEERS_PY, "-c", "import bjoern, gevent.pywsgi"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def setup():
    if not os.path.exists(LICHEN_PY):
        raise Abort("%s not found: create the project venv and run "
                    "'.venv/bin/pip install -e .' in %s" % (LICHEN_PY, ROOT))
    r = subprocess.run([LICHEN_PY, "-c", "import lichen._lichen"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode:
        raise Abort("lichen is not importable from .venv; run "
                    "'.venv/bin/pip install -e .'\n" + r.stderr.decode())
    need_peers = not peers_ok()
    check_tools(need_libev=need_peers)
    if need_peers:
        log("installing bjoern and gevent into %s ..." % PEERS_VENV)
        if not os.path.exists(PEERS_PY):
            subprocess.run([sys.executable, "-m", "venv", PEERS_VENV],
                           check=True)
        r = subprocess.run([PEERS_PY, "-m", "pip", "install", "-q",
                            "bjoern", "gevent"])
        if r.returncode or not peers_ok():
            raise Abort("could not install bjoern and gevent into %s "
                        "(bjoern needs libev-dev and a C compiler)"
                        % PEERS_VENV)


def versions():
    code = ("import importlib.metadata as m, sys;"
            "print(', '.join('%s %s' % (p, m.version(p)) for p in sys.argv[1:]))")
    out = []
    for py, pkgs in ((LICHEN_PY, ["lichen"]),
                     (PEERS_PY, ["bjoern", "gevent", "greenlet"])):
        r = subprocess.run([py, "-c", code] + pkgs, capture_output=True,
                           text=True)
        out.append(r.stdout.strip() or "?")
    r = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    m = re.search(r"wrk (\S+)", r.stdout + r.stderr)
    out.append("wrk " + (m.group(1) if m else "?"))
    return ", ".join(out)


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
    r = subprocess.run([LICHEN_PY, "-c", "import platform;"
                        "print(platform.python_version())"],
                       capture_output=True, text=True)
    return ("Machine: %s, %d cores, Linux %s, Python %s"
            % (model, os.cpu_count(), platform.release(), r.stdout.strip()))


# ---------------------------------------------------------------- servers

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_cmd(name, port):
    pin = ["taskset", "-c", SERVER_CPU]
    if name == "lichen":
        return pin + [LICHEN_PY, "-m", "lichen", "hello_app:app",
                      "--bind", "%s:%d" % (HOST, port)]
    peer = {"bjoern": "bjoern", "gevent.pywsgi": "gevent",
            "gevent.pywsgi+nodelay": "gevent-nodelay"}[name]
    return pin + [PEERS_PY, os.path.join(HERE, "hello_app.py"), peer, HOST,
                  str(port)]


def wait_ready(proc, port, timeout=15):
    url = "http://%s:%d/" % (HOST, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Abort("server exited with status %s" % proc.returncode)
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                body = resp.read()
            if body != b"Hello, World!":
                raise Abort("unexpected response body %r" % body)
            return
        except (OSError, ValueError):
            time.sleep(0.05)
    raise Abort("server did not answer on %s within %d s" % (url, timeout))


def stop(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def cpu_seconds(pid):
    """utime+stime of the process (all its threads) in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime, stime are fields 14, 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------- load

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def to_seconds(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(port, connections, duration):
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c%d" % connections,
           "-d%ds" % duration, "--latency", "http://%s:%d/" % (HOST, port)]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=duration + 30)
    out = r.stdout
    if r.returncode:
        raise Abort("wrk failed:\n" + out + r.stderr)
    res = {"raw": out}
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    res["requests"] = int(m.group(1))
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    for q in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % q, out, re.M)
        res["p" + q] = to_seconds(m.group(1))
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1).strip() if m else ""
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    return res


def bench_server(name, connections, duration, procs):
    port = free_port()
    errlog = tempfile.TemporaryFile()
    proc = subprocess.Popen(server_cmd(name, port), cwd=HERE,
                            stdout=errlog, stderr=errlog,
                            start_new_session=True)
    procs.append(proc)
    try:
        try:
            wait_ready(proc, port)
            wrk(port, connections, WARMUP)
            before = cpu_seconds(proc.pid)
            res = wrk(port, connections, duration)
            after = cpu_seconds(proc.pid)
            if proc.poll() is not None:
                raise Abort("exited during the run")
        except (Abort, OSError) as e:
            if proc.poll() is not None:
                e = "%s (server exit status %s)" % (e, proc.returncode)
            errlog.seek(0)
            tail = errlog.read()[-2000:].decode(errors="replace")
            raise Abort("%s: %s\nserver output:\n%s" % (name, e, tail))
        res["cpu"] = after - before
        res["cpu_per_req"] = res["cpu"] / max(res["requests"], 1)
        return res
    finally:
        stop(proc)
        errlog.close()


# ---------------------------------------------------------------- report

def fmt_lat(sec):
    if sec < 1e-3:
        return "%.0f us" % (sec * 1e6)
    if sec < 1:
        return "%.2f ms" % (sec * 1e3)
    return "%.2f s" % sec


def table(results, connections, duration):
    base = results["lichen"]["cpu_per_req"]
    lines = ["Keep-alive, %d connection%s, %d s (after a %d s warm-up)"
             % (connections, "" if connections == 1 else "s", duration,
                WARMUP), "",
             "| server | req/s | p50 | p99 | CPU us/request | CPU/request vs lichen |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in SERVERS:
        r = results[name]
        lines.append("| %s | %.0f | %s | %s | %.2f | %.2fx |" % (
            name, r["rps"], fmt_lat(r["p50"]), fmt_lat(r["p99"]),
            r["cpu_per_req"] * 1e6, r["cpu_per_req"] / base))
    notes = []
    for name in SERVERS:
        r = results[name]
        if r["socket_errors"] or r["non2xx"]:
            notes.append("%s: socket errors: %s; non-2xx: %d" % (
                name, r["socket_errors"] or "none", r["non2xx"]))
    if notes:
        lines += [""] + ["Errors - " + n for n in notes]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10,
                    help="seconds of each measured run (default 10)")
    ap.add_argument("--connections", type=int, default=100,
                    help="keep-alive connections (default 100)")
    ap.add_argument("--c1", action="store_true",
                    help="also run the latency scenario with 1 connection")
    args = ap.parse_args()
    scenarios = [args.connections]
    if args.c1 and args.connections != 1:
        scenarios.append(1)
    # per server and scenario: start-up + warm-up + measured run + stop
    estimate = len(scenarios) * len(SERVERS) * (WARMUP + args.duration + 2)
    if args.duration < 1 or args.connections < 1:
        ap.error("--duration and --connections must be positive")
    if estimate > TOTAL_BUDGET:
        ap.error("that would take about %d s; the budget is %d s: lower "
                 "--duration or drop --c1" % (estimate, TOTAL_BUDGET))

    procs = []

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        setup()
        mline = machine()
        vline = "Versions: " + versions()
        sections = []
        for c in scenarios:
            results = {}
            for name in SERVERS:
                log("%s, c=%d, %d s ..." % (name, c, args.duration))
                results[name] = bench_server(name, c, args.duration, procs)
            sections.append(table(results, c, args.duration))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Abort as e:
        log("error: %s" % e)
        return 1
    finally:
        for p in procs:
            stop(p)

    cmd = "python3 bench/hello.py --duration %d --connections %d%s" % (
        args.duration, args.connections, " --c1" if args.c1 else "")
    text = "\n\n".join(sections)
    footer = "\n".join([
        mline, vline,
        "gevent.pywsgi runs with its defaults (log=None); "
        "gevent.pywsgi+nodelay is the same with TCP_NODELAY set on each "
        "accepted socket (pywsgi sends head and body in two sends, which "
        "Nagle + delayed ACK hold for ~40 ms).",
        "Server: one process pinned to CPU %s; wrk -t1 pinned to CPU %s. "
        "CPU us/request = (utime+stime of the server process over the "
        "measured run) / requests completed." % (SERVER_CPU, LOAD_CPU),
        "Command: `%s`" % cmd])
    print(text + "\n\n" + footer)
    os.makedirs(os.path.dirname(OUT_MD), exist_ok=True)
    with open(OUT_MD, "w") as f:
        f.write("# Hello-world benchmark\n\n" + text + "\n\n" +
                footer.replace("\n", "\n\n") + "\n\nSee bench/README.md for "
                "what each number means and how to run it.\n")
    log("written to %s" % os.path.relpath(OUT_MD, os.getcwd()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
