#!/usr/bin/env python3
"""testssl.sh against lichen's TLS: what a TLS scanner sees of it.

    python3 bench/testssl.py [--keys ec,rsa] [--timeout SECONDS]
                             [--log DIR] [--doc PATH]

For each key type (--keys, default both: an EC P-256 and an RSA 2048
certificate, since the TLS 1.2 suites on offer depend on the key) it makes
a fresh self-signed certificate for 127.0.0.1 with the openssl command,
starts lichen on 127.0.0.1 (a free port) with that certificate and nothing
else set (its TLS defaults), serving bench/apps.py, and runs the Debian
package's testssl.sh (`apt-get install testssl.sh`; its command is
`testssl`) against it:

    testssl --quiet --color 0 --warnings off --nodns none
            --connect-timeout 5 --openssl-timeout 10
            -p -s -f -E -P -S -g -c -U --jsonfile FILE 127.0.0.1:PORT

that is protocols, cipher categories, forward secrecy, the cipher suites
offered per protocol, the server's preferences and defaults (extensions,
session resumption), implementation bugs (GREASE, sizes), client
simulations and the known attacks.  Nothing leaves the machine: no DNS,
no revocation look-ups (testssl.sh only does those with --phone-out).
Each scan is bounded (--timeout, default 300 s: it takes about a minute).

It prints a summary in markdown: the protocols offered, the suites per
protocol, the vulnerability checks, session resumption and extensions, the
simulated clients that could not connect, every finding testssl.sh rates
below OK (split into those about the throwaway self-signed certificate and
the rest), its "NOT ok" lines, and how many lines lichen logged while being
scanned.  --doc PATH writes the same to PATH, in place of its "## testssl.sh"
section if it has one (docs/tls.md's is made so).  The full logs and JSON stay in a temporary directory, or in DIR
with --log DIR; they are not for the repository.

Standard library only; lichen runs in the project venv (.venv).
"""
import argparse
import collections
import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LICHEN_PY = os.path.join(ROOT, ".venv", "bin", "python")
HOST = "127.0.0.1"
START_TIMEOUT = 20.0
LISTENING_RE = re.compile(r"Listening at: https://127\.0\.0\.1:(\d+) ")

TESTSSL_OPTIONS = ["--quiet", "--color", "0", "--warnings", "off",
                   "--nodns", "none", "--connect-timeout", "5",
                   "--openssl-timeout", "10",
                   "-p", "-s", "-f", "-E", "-P", "-S", "-g", "-c", "-U"]

KEYS = {
    "ec": ("EC P-256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    "rsa": ("RSA 2048", ["-newkey", "rsa:2048"]),
}

PROTOCOLS = [("SSLv2", "SSLv2"), ("SSLv3", "SSLv3"), ("TLS1", "TLS 1.0"),
             ("TLS1_1", "TLS 1.1"), ("TLS1_2", "TLS 1.2"),
             ("TLS1_3", "TLS 1.3"), ("NPN", "NPN/SPDY"), ("ALPN", "ALPN"),
             ("ALPN_HTTP2", "ALPN HTTP/2")]
CATEGORIES = [("cipherlist_NULL", "NULL ciphers"),
              ("cipherlist_aNULL", "anonymous (aNULL)"),
              ("cipherlist_EXPORT", "export"),
              ("cipherlist_LOW", "LOW (64-bit, DES, RC2, RC4)"),
              ("cipherlist_3DES_IDEA", "3DES / IDEA"),
              ("cipherlist_AVERAGE", "obsolete CBC"),
              ("cipherlist_STRONG", "strong (AEAD)")]
VULNERABILITIES = [
    ("heartbleed", "Heartbleed (CVE-2014-0160)"),
    ("CCS", "CCS injection (CVE-2014-0224)"),
    ("ticketbleed", "Ticketbleed (CVE-2016-9244)"),
    ("ROBOT", "ROBOT"),
    ("secure_renego", "Secure renegotiation (RFC 5746)"),
    ("secure_client_renego", "Client-initiated renegotiation"),
    ("CRIME_TLS", "CRIME, TLS compression (CVE-2012-4929)"),
    ("BREACH", "BREACH, HTTP compression (CVE-2013-3587)"),
    ("POODLE_SSL", "POODLE, SSL (CVE-2014-3566)"),
    ("fallback_SCSV", "TLS_FALLBACK_SCSV (RFC 7507)"),
    ("SWEET32", "SWEET32 (CVE-2016-2183, CVE-2016-6329)"),
    ("FREAK", "FREAK (CVE-2015-0204)"),
    ("DROWN", "DROWN (CVE-2016-0800, CVE-2016-0703)"),
    ("LOGJAM", "LOGJAM (CVE-2015-4000)"),
    ("LOGJAM-common_primes", "LOGJAM, common primes"),
    ("BEAST", "BEAST (CVE-2011-3389)"),
    ("LUCKY13", "LUCKY13 (CVE-2013-0169)"),
    ("winshock", "Winshock (CVE-2014-6321)"),
    ("RC4", "RC4 (CVE-2013-2566, CVE-2015-2808)"),
]
DEFAULTS = [("cipher_order", "server cipher order"),
            ("protocol_negotiated", "negotiated protocol"),
            ("cipher_negotiated", "negotiated cipher"),
            ("PFS", "forward secrecy"), ("FS", "forward secrecy"),
            ("PFS_ECDHE_curves", "ECDHE curves"),
            ("FS_ECDHE_curves", "ECDHE curves"),
            ("DH_groups", "finite field groups"),
            ("TLS_extensions", "TLS extensions"),
            ("TLS_session_ticket", "session ticket"),
            ("SSL_sessionID_support", "session ID support"),
            ("sessionresumption_ticket", "resumption by ticket"),
            ("sessionresumption_ID", "resumption by session ID"),
            ("TLS_timestamp", "TLS clock skew"),
            ("OCSP_stapling", "OCSP stapling"),
            ("pre_128cipher", "128-cipher limit bug"),
            ("GREASE", "GREASE")]
# Findings about the certificate itself: this script's certificate is a
# throwaway self-signed one, so these say nothing about lichen.
CERT_PREFIXES = ("cert", "OCSP", "DNS_CAA", "certificate_transparency",
                 "intermediate_cert", "chain_of_trust")
NOT_OK = ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN")


class Failed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def testssl_exe():
    for name in ("testssl", "testssl.sh"):
        exe = shutil.which(name)
        if exe:
            return exe
    raise Failed("testssl.sh is not installed: apt-get install testssl.sh")


def versions(exe):
    """testssl.sh's version, its Debian package's, and the OpenSSL it
    uses (without the host name its banner shows)."""
    out = subprocess.run([exe, "--version"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, errors="replace",
                         timeout=60).stdout
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    m = re.search(r"testssl(?:\.sh)?\s+(\S+)\s+from", out)
    version = m.group(1) if m else "?"
    m = re.search(r'Using "(OpenSSL[^"(]*?)\s*(?:\(|")', out)
    openssl = m.group(1).strip() if m else "?"
    m = re.search(r"^\s*on [^:]*:(\S+)", out, re.M)
    openssl_path = m.group(1) if m else "?"
    package = "?"
    if shutil.which("dpkg-query"):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}",
                            "testssl.sh"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            package = r.stdout.strip()
    return version, package, openssl, openssl_path


def make_certificate(directory, key):
    exe = shutil.which("openssl")
    if exe is None:
        raise Failed("the openssl command is not installed (Debian package openssl)")
    cert = os.path.join(directory, f"{key}-cert.pem")
    keyfile = os.path.join(directory, f"{key}-key.pem")
    subprocess.run([exe, "req", "-x509", *KEYS[key][1], "-nodes",
                    "-keyout", keyfile, "-out", cert, "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, keyfile


class Lichen:
    """lichen serving bench/apps.py over TLS on 127.0.0.1, a free port;
    its stderr collected by a thread."""

    def __init__(self, cert, key):
        if not os.path.exists(LICHEN_PY):
            raise Failed(f"no project venv: {LICHEN_PY} is missing")
        env = dict(os.environ, PYTHONPATH=HERE, PYTHONUNBUFFERED="1")
        self.command = [LICHEN_PY, "-m", "lichen", "--bind", f"{HOST}:0",
                        "--certfile", cert, "--keyfile", key, "apps:app"]
        self.proc = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = self._wait_port()

    def _read(self):
        for raw in self.proc.stderr:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def _wait_port(self):
        deadline = time.monotonic() + START_TIMEOUT
        with self.cond:
            while True:
                for line in self.lines:
                    m = line and LISTENING_RE.search(line)
                    if m:
                        return int(m.group(1))
                left = deadline - time.monotonic()
                if None in self.lines or left <= 0:
                    break
                self.cond.wait(left)
        self.stop()
        raise Failed("lichen did not report an https listener; stderr:\n"
                     + "\n".join(l for l in self.lines if l))

    def log_lines(self):
        with self.cond:
            return [l for l in self.lines if l is not None]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(5)
        return self.proc.returncode


def https_get(port, cafile):
    """One GET / over TLS with the certificate verified; the status line
    and the protocol, or the error."""
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection((HOST, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Connection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                status = data.split(b"\r\n", 1)[0].decode("latin-1")
                return f"{status} over {s.version()}"
    except (OSError, ssl.SSLError) as e:
        return f"failed: {e!r}"


def resumption(port, cafile):
    """Session resumption as a client sees it, checked here beside
    testssl.sh: TLS 1.2 by session ID (the client refusing tickets), TLS 1.2
    by ticket, TLS 1.3 by ticket. {name: "yes" | "no" | error}"""
    out = {}
    cases = [("TLS 1.2, session ID", ssl.TLSVersion.TLSv1_2, True),
             ("TLS 1.2, ticket", ssl.TLSVersion.TLSv1_2, False),
             ("TLS 1.3, ticket", ssl.TLSVersion.TLSv1_3, False)]
    for name, version, no_ticket in cases:
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.minimum_version = ctx.maximum_version = version
        if no_ticket:
            ctx.options |= ssl.OP_NO_TICKET
        session = None
        try:
            for _ in range(2):
                with socket.create_connection((HOST, port), timeout=5) as raw:
                    with ctx.wrap_socket(raw, server_hostname=HOST,
                                         session=session) as s:
                        # a request answered: TLS 1.3 tickets come after
                        # the handshake, read with the answer
                        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Connection: close\r\n\r\n")
                        while s.recv(65536):
                            pass
                        reused = s.session_reused
                        session = s.session
            out[name] = "yes" if reused else "no"
        except (OSError, ssl.SSLError) as e:
            out[name] = f"failed: {e!r}"
    return out


def scan(exe, key, workdir, timeout):
    """One certificate, one lichen, one testssl.sh run. Returns what the
    summary needs."""
    cert, keyfile = make_certificate(workdir, key)
    server = Lichen(cert, keyfile)
    try:
        before = https_get(server.port, cert)
        resumed = resumption(server.port, cert)
        lines0 = len(server.log_lines())
        jsonfile = os.path.join(workdir, f"testssl-{key}.json")
        logfile = os.path.join(workdir, f"testssl-{key}.log")
        cmd = [exe, *TESTSSL_OPTIONS, "--jsonfile", jsonfile,
               f"{HOST}:{server.port}"]
        log(f"{KEYS[key][0]}: lichen on port {server.port}; running "
            f"{' '.join(cmd)} (at most {timeout} s)")
        t0 = time.monotonic()
        with open(logfile, "w") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=workdir,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                raise Failed(f"testssl.sh took over {timeout} s; its log: "
                             f"{logfile}")
        took = time.monotonic() - t0
        alive = server.proc.poll() is None
        after = https_get(server.port, cert) if alive else "lichen is gone"
        server_lines = server.log_lines()[lines0:]
    finally:
        rc_server = server.stop()
    with open(logfile, errors="replace") as f:
        text = f.read()
    try:
        with open(jsonfile) as f:
            findings = json.load(f)
    except (OSError, ValueError) as e:
        raise Failed(f"testssl.sh (exit {rc}) wrote no JSON ({e}); its log: "
                     f"{logfile}\n{text[-3000:]}")
    return {"key": key, "findings": findings, "text": text, "rc": rc,
            "took": took, "alive": alive, "before": before, "after": after,
            "server_lines": server_lines, "resumption": resumed, "server_rc": rc_server,
            "lichen_command": server.command}


# ---------------------------------------------------------------- summary

def by_id(findings):
    out = collections.OrderedDict()
    for f in findings:
        out.setdefault(f["id"], []).append(f)
    return out


def show(f):
    """A finding as the summary shows it: the text, and the rating when
    it is not OK/INFO."""
    text = " ".join(f["finding"].split())
    sev = f.get("severity", "")
    return text if sev in ("OK", "INFO") else f"{text} ({sev})"


def cipher_rows(findings):
    """{protocol: [(hexcode, OpenSSL name, kx, encryption, bits, IANA)]}"""
    out = collections.OrderedDict()
    for f in findings:
        if not f["id"].startswith("cipher-"):
            continue
        m = re.match(r"^(SSLv2|SSLv3|TLS 1(?:\.\d)?)\s+(.*)$", f["finding"].strip())
        if not m:
            continue
        tokens = m.group(2).split()
        if len(tokens) < 6:
            continue
        out.setdefault(m.group(1), []).append(
            (tokens[0], tokens[1], " ".join(tokens[2:-3]), tokens[-3],
             tokens[-2], tokens[-1]))
    return out


def cell(index, fid):
    fs = index.get(fid)
    return "; ".join(show(f) for f in fs) if fs else "-"


def table(rows, runs, indexes):
    heads = [KEYS[r["key"]][0] + " certificate" for r in runs]
    out = ["| check | " + " | ".join(heads) + " |",
           "| --- | " + " | ".join("---" for _ in heads) + " |"]
    for fid, name in rows:
        if not any(fid in ix for ix in indexes):
            continue
        cells = [cell(ix, fid).replace("|", "\\|") for ix in indexes]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def summary(runs, versions_, exe, when):
    version, package, openssl, openssl_path = versions_
    indexes = [by_id(r["findings"]) for r in runs]
    keys = ",".join(r["key"] for r in runs)
    lines = [
        "## testssl.sh",
        "",
        f"Made on {when} with testssl.sh {version} (Debian package "
        f"testssl.sh {package}), which used {openssl} ({openssl_path}), by",
        "",
        "```",
        f"python3 bench/testssl.py --keys {keys}",
        "```",
        "",
        "which, for each certificate (a fresh self-signed one for 127.0.0.1: "
        + ", ".join(KEYS[r["key"]][0] for r in runs) + "), started",
        "",
        "```",
        "PYTHONPATH=bench .venv/bin/python -m lichen --bind 127.0.0.1:0 "
        "--certfile CERT --keyfile KEY apps:app",
        "```",
        "",
        "(bench/apps.py, every TLS option at its default) and ran",
        "",
        "```",
        f"{os.path.basename(exe)} {' '.join(TESTSSL_OPTIONS)} "
        "--jsonfile FILE 127.0.0.1:PORT",
        "```",
        "",
        "Each scan took "
        + ", ".join(f"{r['took']:.0f} s ({KEYS[r['key']][0]})" for r in runs)
        + ". Nothing left the machine (no DNS, no revocation look-ups).",
        "",
        "### Protocols",
        "",
        *table(PROTOCOLS, runs, indexes),
        "",
        "### Cipher suites offered, per protocol",
        "",
        "testssl.sh lists them by strength (lichen leaves the order to the "
        "client, see the server's preferences below).",
        "",
    ]
    for r in runs:
        lines.append(f"{KEYS[r['key']][0]} certificate:")
        lines.append("")
        lines.append("| protocol | code | OpenSSL name | IANA name | "
                     "key exchange | encryption | bits |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        rows = cipher_rows(r["findings"])
        for proto, suites in rows.items():
            for hexcode, name, kx, enc, bits, iana in suites:
                lines.append(f"| {proto} | {hexcode} | {name} | {iana} | "
                             f"{kx} | {enc} | {bits} |")
        if not rows:
            lines.append("| (none found) | | | | | | |")
        lines.append("")
    lines += ["### Cipher categories", "", *table(CATEGORIES, runs, indexes),
              "", "### Server preferences and defaults", "",
              *table(DEFAULTS, runs, indexes), "",
              "Session resumption checked by this script itself before the "
              "scan (Python's ssl: a connection, then a second one offering "
              "the first one's session):", ""]
    for r in runs:
        lines.append(f"- {KEYS[r['key']][0]}: " + "; ".join(
            f"{k}: {v}" for k, v in r["resumption"].items()) + ".")
    racy = [KEYS[r["key"]][0] for r, ix in zip(runs, indexes)
            if "not supported" in cell(ix, "sessionresumption_ID")
            and r["resumption"].get("TLS 1.2, session ID") == "yes"]
    if racy:
        lines += ["", "testssl.sh said resumption by session ID is not "
                  f"supported ({', '.join(racy)}) where the check above "
                  "resumed by ID: testssl.sh 3.0.8 tries it with `openssl "
                  "s_client -no_ticket -sess_out FILE < /dev/null`, which "
                  "over TLS 1.3 only saves a session when the server's "
                  "NewSessionTicket arrives before s_client quits at the end "
                  "of its input, a race that gives yes or no from one run "
                  "to the next, against `openssl s_server` as well."]
    failed = [KEYS[r["key"]][0] for r, ix in zip(runs, indexes)
              if "connect problem" in cell(ix, "sessionresumption_ticket")
              and r["resumption"].get("TLS 1.3, ticket") == "yes"]
    if failed:
        lines += ["", "testssl.sh's ticket resumption check failed on a "
                  f"\"connect problem\" ({', '.join(failed)}) where the check "
                  "above resumed by ticket: the same race (when s_client "
                  "quits before the ticket comes, the second s_client is "
                  "given an empty session file), seen against `openssl "
                  "s_server` too."]
    lines += ["", "### Vulnerabilities", "",
              *table(VULNERABILITIES, runs, indexes), ""]
    # client simulations: those that could not connect
    lines += ["### Simulated clients", ""]
    for r in runs:
        sims = [f for f in r["findings"] if f["id"].startswith("clientsimulation-")]
        failed = [f["id"][len("clientsimulation-"):] for f in sims
                  if "no connection" in f["finding"].lower()]
        lines.append(f"- {KEYS[r['key']][0]}: {len(sims) - len(failed)} of "
                     f"{len(sims)} simulated clients connected"
                     + (f"; not: {', '.join(failed)}" if failed else "") + ".")
    lines.append("")
    # everything rated below OK
    lines += ["### Findings rated below OK", ""]
    for r in runs:
        bad = [f for f in r["findings"] if f.get("severity") in NOT_OK]
        server = [f for f in bad if not f["id"].startswith(CERT_PREFIXES)]
        cert = [f for f in bad if f["id"].startswith(CERT_PREFIXES)]
        lines.append(f"{KEYS[r['key']][0]} certificate:")
        lines.append("")
        if server:
            for f in server:
                lines.append(f"- `{f['id']}` {f['severity']}: "
                             f"{' '.join(f['finding'].split())}")
        else:
            lines.append("- about the server: none")
        if cert:
            lines.append("- about the throwaway self-signed certificate "
                         "(not lichen's): "
                         + "; ".join(f"`{f['id']}` {f['severity']} "
                                     f"({' '.join(f['finding'].split())})"
                                     for f in cert))
        not_ok = [" ".join(l.split()) for l in r["text"].splitlines()
                  if "NOT ok" in l or "WARN" in l]
        if not_ok:
            lines.append("- its \"NOT ok\"/warning lines: "
                         + "; ".join(f"`{l}`" for l in not_ok))
        lines.append("")
    if any("NOT a cipher order" in cell(ix, "cipher_order") for ix in indexes):
        lines += ["`cipher_order`: lichen sets no server cipher order, so "
                  "the client picks among the suites offered, every one of "
                  "them ECDHE with an AEAD (as in Mozilla's intermediate "
                  "configuration); testssl.sh rates the absence of an order "
                  "HIGH whatever the suites are.", ""]
    lines += ["### lichen while scanned", ""]
    for r in runs:
        server_lines = r["server_lines"]
        # the messages without the time and pid, and without the count of
        # those the rate limit left out
        kinds = collections.Counter(
            re.sub(r" \(and \d+ more not logged\)$", "",
                   re.sub(r"^\[[^]]*\] \[\d+\] ", "", l))
            for l in server_lines)
        left_out = sum(int(n) for l in server_lines for n in
                       re.findall(r"\(and (\d+) more not logged\)$", l))
        lines.append(
            f"- {KEYS[r['key']][0]}: lichen logged {len(server_lines)} lines "
            f"in the {r['took']:.0f} s of the scan (the rate limit left "
            f"out {left_out} more)"
            + (": " + "; ".join(f"{n} x `{k}`" for k, n in kinds.most_common())
               if kinds else "")
            + f". Before the scan a GET gave {r['before']}, after it "
            f"{r['after']}; lichen exited with {r['server_rc']} on SIGTERM.")
    lines.append("")
    return "\n".join(wrap(lines))


def wrap(lines, width=76):
    """The prose and list items wrapped at width; tables, headings and
    code blocks as they are."""
    out, code = [], False
    for line in lines:
        if line.startswith("```"):
            code = not code
        if code or line.startswith(("```", "|", "#")) or len(line) <= width:
            out.append(line)
        elif line.startswith("- "):
            out.append(textwrap.fill(line, width, subsequent_indent="  ",
                                     break_long_words=False,
                                     break_on_hyphens=False))
        else:
            out.append(textwrap.fill(line, width, break_long_words=False,
                                     break_on_hyphens=False))
    return out


def write_doc(path, text):
    """text (a "## testssl.sh" section) into path: in place of the
    section of that name when the file has one (up to the next "## "
    heading), else the whole file."""
    try:
        with open(path) as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    head = text.splitlines()[0]
    if head in (l.rstrip("\n") for l in lines):
        start = [l.rstrip("\n") for l in lines].index(head)
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ")), len(lines))
        tail = lines[end:]
        out = "".join(lines[:start]) + text.rstrip("\n") + "\n"
        if tail:
            out += "\n" + "".join(tail)
    else:
        out = text
    with open(path, "w") as f:
        f.write(out)


def main():
    doc = __doc__
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--keys", default="ec,rsa",
                    help="key types, comma-separated: ec, rsa (default both)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds a scan may take (default 300)")
    ap.add_argument("--log", metavar="DIR",
                    help="keep testssl.sh's logs, JSON and the certificates in DIR")
    ap.add_argument("--doc", metavar="PATH",
                    help="also write the summary (markdown) to PATH")
    args = ap.parse_args()
    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
    for k in keys:
        if k not in KEYS:
            ap.error(f"unknown key type {k!r} (ec, rsa)")
    try:
        exe = testssl_exe()
        vers = versions(exe)
        when = datetime.date.today().isoformat()
        if args.log:
            os.makedirs(args.log, exist_ok=True)
            workdir, tmp = args.log, None
        else:
            tmp = tempfile.TemporaryDirectory(prefix="lichen-testssl-")
            workdir = tmp.name
        try:
            runs = [scan(exe, k, workdir, args.timeout) for k in keys]
        finally:
            if tmp is not None:
                tmp.cleanup()
    except Failed as e:
        log(f"testssl.py: {e}")
        return 1
    text = summary(runs, vers, exe, when)
    print(text)
    if args.doc:
        write_doc(args.doc, text)
        log(f"wrote {args.doc}")
    if args.log:
        log(f"testssl.sh's logs and JSON: {args.log}")
    return 0 if all(r["alive"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
