"""gunicorn's request corpus (tests/requests in its sdist) replayed against lichen.

The pinned sdist is fetched from PyPI at test time into .cache/corpora/ (reused
when present). Each tests/requests/{valid,invalid}/NAME.http is decoded by the
rules of gunicorn's tests/treq.py (reimplemented below) and its NAME.py, which
holds the expected parse (valid) or the expected exception (invalid), is run
with stand-ins for the few gunicorn names it imports.

- valid: the request(s) must reach the application with the same method,
  target (RAW_URI), version (SERVER_PROTOCOL), headers (as WSGI maps them) and
  body, whether the bytes come whole, line by line, byte by byte or in five
  seeded random splits.
- invalid: the server answers 4xx (501/505 where the RFC says so) and closes,
  and the application never gets the request.
- every case also goes through the parser probe, whole and at every prefix.

Where RFC 9112/9110 and the corpus disagree the RFC wins: RFC_DEVIATIONS lists
those cases with the sentence that decides them, and what lichen must do.
See docs/conformance/gunicorn-corpus.md.
"""
import builtins
import hashlib
import os
import random
import select
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import types
import urllib.parse
import zlib

import pytest

import support
from lichen import _lichen

GUNICORN_VERSION = '27.0.1'
SDIST = 'gunicorn-%s.tar.gz' % GUNICORN_VERSION
SDIST_SHA256 = 'b1514965361c8b7e8107a80aa2a92636878df1ccfac6dd204a676426e04d9e3e'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, '.cache', 'corpora')
CORPUS_DIR = os.path.join(CACHE, 'gunicorn-%s' % GUNICORN_VERSION)

# -- fetching ------------------------------------------------------------------


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 16), b''):
            h.update(block)
    return h.hexdigest()


def _fetch_sdist():
    path = os.path.join(CACHE, SDIST)
    if os.path.exists(path) and _sha256(path) == SDIST_SHA256:
        return path
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run(
            [sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps',
             '--no-binary', ':all:', 'gunicorn==%s' % GUNICORN_VERSION, '-d', tmp],
            check=True, timeout=300)
        got = os.path.join(tmp, SDIST)
        digest = _sha256(got)
        assert digest == SDIST_SHA256, 'sdist %s has sha256 %s' % (SDIST, digest)
        os.replace(got, path)
    return path


def _extract():
    """tests/requests/ and tests/treq.py of the sdist, into CORPUS_DIR."""
    if os.path.isdir(os.path.join(CORPUS_DIR, 'requests', 'valid')):
        return CORPUS_DIR
    sdist = _fetch_sdist()
    prefix = 'gunicorn-%s/tests/' % GUNICORN_VERSION
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                if not m.isfile() or not m.name.startswith(prefix):
                    continue
                rel = m.name[len(prefix):]
                if not (rel.startswith('requests/') or rel == 'treq.py'):
                    continue
                assert '..' not in rel.split('/'), m.name
                dest = os.path.join(tmp, 'out', *rel.split('/'))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with tar.extractfile(m) as src, open(dest, 'wb') as out:
                    out.write(src.read())
        try:
            os.rename(os.path.join(tmp, 'out'), CORPUS_DIR)
        except OSError:  # extracted meanwhile by a concurrent run
            if not os.path.isdir(os.path.join(CORPUS_DIR, 'requests', 'valid')):
                raise
    return CORPUS_DIR


# -- gunicorn's test conventions, reimplemented from tests/treq.py ---------------

def decode_http(raw):
    """treq.request / treq.badrequest: drop every newline of the file, then
    turn the written escapes \\r\\n, \\0, \\n, \\t and \\xHH into bytes."""
    data = raw.replace(b'\n', b'').replace(b'\\r\\n', b'\r\n')
    data = data.replace(b'\\0', b'\000').replace(b'\\n', b'\n').replace(b'\\t', b'\t')
    out = bytearray()
    i = 0
    while i < len(data):
        if i + 3 < len(data) and data[i:i + 2] == b'\\x':
            try:
                out.append(int(data[i + 2:i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        out.append(data[i])
        i += 1
    assert b'\\' not in out, 'unexpected backslash in corpus data'
    return bytes(out)


# The statements of treq.py the decoder above mirrors: if an update of the
# pin changes them, test_decoding_rules_match_treq says so.
TREQ_DECODING = [
    b'self.data = self.data.replace(b"\\n", b"").replace(b"\\\\r\\\\n", b"\\r\\n")',
    b'self.data = self.data.replace(b"\\\\0", b"\\000").replace(b"\\\\n", b"\\n")'
    b'.replace(b"\\\\t", b"\\t")',
    b'self.data = decode_hex_escapes(self.data)',
    b"if i + 3 < len(data) and data[i:i+2] == b'\\\\x':",
]


def split_request_uri(uri):
    """gunicorn.util.split_request_uri."""
    if uri.startswith('//'):
        parts = urllib.parse.urlsplit('.' + uri)
        return parts._replace(path=parts.path[1:])
    return urllib.parse.urlsplit(uri)


def uri(data):
    """treq.uri: what the .py files call to describe a request-target."""
    parts = split_request_uri(data)
    return {'raw': data, 'scheme': parts.scheme or '', 'path': parts.path or '',
            'query': parts.query or '', 'fragment': parts.fragment or ''}


class _Config:
    """Stands in for gunicorn.config.Config: records what a case sets."""

    def __init__(self):
        self.settings = {}

    def set(self, name, value):
        self.settings[name] = value


def _stub_modules():
    errors = types.ModuleType('gunicorn.http.errors')
    errors.__getattr__ = lambda name: type(name, (Exception,), {})
    config = types.ModuleType('gunicorn.config')
    config.Config = _Config
    return {'gunicorn.http.errors': errors, 'gunicorn.config': config}


def load_expect(path):
    """treq.load_py: run NAME.py with uri and cfg predefined. Its imports of
    gunicorn.config and gunicorn.http.errors get the stand-ins above."""
    stubs = _stub_modules()

    def imp(name, globals=None, locals=None, fromlist=(), level=0):
        if name in stubs and fromlist:
            return stubs[name]
        raise ImportError('corpus file %s imports %s' % (path, name))

    env = {'__builtins__': dict(vars(builtins), __import__=imp),
           '__name__': '__config__', 'uri': uri, 'cfg': _Config()}
    with open(path) as f:
        exec(compile(f.read(), path, 'exec'), env)
    return env


# gunicorn's defaults for the limits the corpus sets (gunicorn/config.py) and
# how gunicorn's message.py reads them.
GUNICORN_LIMITS = {'limit_request_line': 4094, 'limit_request_fields': 100,
                   'limit_request_field_size': 8190}


def lichen_limits(settings):
    """lichen options equivalent to a case's gunicorn limits. gunicorn caps the
    request line at 8190, reads 0 or less as its maximum/default, and counts
    the CRLF in a field's size (a field line of N bytes passes when N + 2 <=
    limit); lichen counts the line without its CRLF."""
    s = dict(GUNICORN_LIMITS, **settings)
    line = s['limit_request_line']
    assert line != 0, 'unlimited request line is not used by the corpus'
    if line < 0 or line >= 8190:
        line = 8190
    fields = s['limit_request_fields']
    if fields <= 0 or fields > 32768:
        fields = 32768
    size = s['limit_request_field_size']
    if size <= 0:
        size = 8190
    # lichen's smallest field limit is 16 (invalid/010 and invalid/013 ask for
    # less; both stay rejected: 010 with 431, 013 for its obs-fold)
    return {'limit_request_line': line, 'limit_request_fields': fields,
            'limit_request_field_size': max(16, size - 2)}


class Case:
    def __init__(self, kind, stem, directory):
        self.kind = kind
        self.name = '%s/%s' % (kind, stem)
        with open(os.path.join(directory, stem + '.http'), 'rb') as f:
            self.data = decode_http(f.read())
        env = load_expect(os.path.join(directory, stem + '.py'))
        self.settings = env['cfg'].settings
        self.limits = lichen_limits(self.settings)
        req = env['request']
        if kind == 'valid':
            self.expect = [_normalize(r) for r in (req if isinstance(req, list) else [req])]
            self.error = None
        else:
            self.expect = None
            self.error = req.__name__

    def __repr__(self):
        return self.name


def _normalize(exp):
    exp = dict(exp)
    if isinstance(exp['body'], str):
        exp['body'] = exp['body'].encode('latin-1')
    return exp


def load_corpus():
    base = os.path.join(_extract(), 'requests')
    cases = []
    for kind in ('valid', 'invalid'):
        d = os.path.join(base, kind)
        for fn in sorted(os.listdir(d)):
            if fn.endswith('.http'):
                cases.append(Case(kind, fn[:-5], d))
    return cases


CASES = load_corpus()
BY_NAME = {c.name: c for c in CASES}

# -- where the RFC decides -------------------------------------------------------

MISSING_HOST = ('RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code '
                'to any HTTP/1.1 request message that lacks a Host header field and to any '
                'request message that contains more than one Host header field line or a '
                'Host header field with an invalid field value."')
INVALID_TARGET = ('RFC 9112 3: "Recipients of an invalid request-line SHOULD respond with '
                  'either a 400 (Bad Request) error or a 301 (Moved Permanently) redirect with '
                  'the request-target properly encoded." (RFC 9112 3.2.1: origin-form = '
                  'absolute-path [ "?" query ]; RFC 3986 pchar has no %s)')
OBS_FOLD = ('RFC 9112 5.2: "A server that receives an obs-fold in a request message that is '
            'not within a "message/http" container MUST either reject the message by sending '
            'a 400 (Bad Request), preferably with a representation explaining that obsolete '
            'line folding is unacceptable, or replace each received obs-fold with one or more '
            'SP octets prior to interpreting the field value or forwarding the message '
            'downstream."')
UNKNOWN_CODING = ('RFC 9112 6.1: "A server that receives a request message with a transfer '
                  'coding it does not understand SHOULD respond with 501 (Not Implemented)." '
                  '("identity" left the registry with RFC 7230; gzip is not decoded by a WSGI '
                  'server, and a WSGI application is handed a decoded body.)')
SPACE_BEFORE_COLON = ('RFC 9112 5.1: "No whitespace is allowed between the field name and '
                      'colon. [...] A server MUST reject, with a response status code of 400 '
                      '(Bad Request), any received request message that contains whitespace '
                      'between a header field name and colon."')
PROXY_LINE = ('RFC 9112 3: "request-line = method SP request-target SP HTTP-version"; a PROXY '
              'protocol preamble is not HTTP (gunicorn reads it only with --proxy-protocol), '
              'and "Recipients of an invalid request-line SHOULD respond with either a 400 (Bad '
              'Request) error or a 301 (Moved Permanently) redirect".')
UNDERSCORE = ('RFC 9110 5.1: "field-name = token" and RFC 9110 5.6.2 tchar includes "_": a '
              'field name with "_" is valid, and gunicorn rejects it only with '
              'header_map=refuse; lichen accepts the request and, as gunicorn\'s default '
              'header_map=drop, leaves such fields out of the environ (CGI would map "_" and '
              '"-" to the same key).')
TRAILER_DISCARD = ('RFC 9110 6.5.2: "A recipient that removes the chunked coding from a message '
                   'MAY selectively retain or discard the received trailer fields. A recipient '
                   'MUST NOT merge a received trailer field into the header section unless its '
                   'corresponding header field definition explicitly permits and instructs how '
                   'the trailer field value can be safely merged." lichen discards trailers, so '
                   'the framing/routing field in the trailer has no effect.')
LEADING_CRLF = ('RFC 9112 2.2: "In the interest of robustness, a server that is expecting to '
                'receive and parse a request-line SHOULD ignore at least one empty line (CRLF) '
                'received prior to the request-line." lichen ignores any number of them (within '
                'the request-line limit); gunicorn only one.')

METHOD_CASE = ('RFC 9110 9.1: "The method token is case-sensitive because it might be used as '
               'a gateway to object-based systems with case-sensitive method names." gunicorn '
               'upper-cases it with casefold_http_method; lichen passes "-blargh" as sent.')
INCOMPLETE = ('RFC 9112 8: "A message that uses a valid Content-Length is incomplete if the size '
              'of the message body received (in octets) is less than the value given by '
              'Content-Length. A server that receives an incomplete request message, usually due '
              'to a canceled request or a triggered timeout exception, MAY send an error response '
              'prior to closing the connection." The file holds 8599 of the 17914 body octets '
              'announced; gunicorn\'s test feeds it to the parser and accepts the short body at '
              'the end of its input. Over a socket the client sends it and half-closes: the '
              'application must not get a complete body (its read fails).')

RFC_DEVIATIONS = {
    # valid in the corpus, rejected by lichen
    'valid/004': MISSING_HOST,
    'valid/005': MISSING_HOST + ' ' + INVALID_TARGET % '"#" (a fragment is not part of a request-target)',
    'valid/006': MISSING_HOST,
    'valid/007': MISSING_HOST,
    'valid/010': MISSING_HOST,
    'valid/011': MISSING_HOST,
    'valid/012': MISSING_HOST,
    'valid/013': MISSING_HOST,
    'valid/014': MISSING_HOST,
    'valid/018': MISSING_HOST,
    'valid/021': MISSING_HOST,
    'valid/022': MISSING_HOST + ' (the second, HTTP/1.1, request)',
    'valid/023': MISSING_HOST,
    'valid/025': MISSING_HOST + ' ' + UNKNOWN_CODING,
    'valid/025_line': MISSING_HOST + ' ' + UNKNOWN_CODING,
    'valid/028': MISSING_HOST + ' ' + SPACE_BEFORE_COLON,
    'valid/029': MISSING_HOST + ' ' + UNKNOWN_CODING,
    'valid/030': MISSING_HOST + ' ' + UNKNOWN_CODING,
    'valid/031': MISSING_HOST,
    'valid/031compat': MISSING_HOST + ' ' + METHOD_CASE,
    'valid/031compat2': MISSING_HOST,
    'valid/100': MISSING_HOST,
    'valid/099': INCOMPLETE,
    'valid/compat_obs_fold': OBS_FOLD,
    'valid/compat_obs_fold_huge': MISSING_HOST + ' ' + OBS_FOLD,
    'valid/pp_01': PROXY_LINE,
    'valid/pp_02': PROXY_LINE,
    'valid/pp_04': PROXY_LINE,
    'valid/pp_05': PROXY_LINE,
    'valid/rfc9112_smuggle_gzip_chunked_01': UNKNOWN_CODING,
    'valid/rfc9112_smuggle_te_identity_chunked_01': UNKNOWN_CODING,
    # invalid in the corpus, accepted by lichen
    'invalid/040': UNDERSCORE,
    'invalid/rfc9110_trailer_forbidden_cl_01': TRAILER_DISCARD,
    'invalid/rfc9110_trailer_forbidden_host_01': TRAILER_DISCARD,
    'invalid/rfc9110_trailer_forbidden_te_01': TRAILER_DISCARD,
    'invalid/rfc9112_leading_crlf_02': LEADING_CRLF,
}

# Valid cases lichen rejects for a reason other than a missing Host: the status,
# also for the copy with a Host line added. (Missing Host alone is a 400.)
DEVIATION_STATUS = {
    'valid/005': 400, 'valid/028': 400,
    'valid/025': 501, 'valid/025_line': 501, 'valid/029': 501, 'valid/030': 501,
    'valid/compat_obs_fold': 400, 'valid/compat_obs_fold_huge': 400,
    'valid/pp_01': 400, 'valid/pp_02': 400, 'valid/pp_04': 400, 'valid/pp_05': 400,
    'valid/rfc9112_smuggle_gzip_chunked_01': 501,
    'valid/rfc9112_smuggle_te_identity_chunked_01': 501,
}

# Expectation changes for the copy of a deviation with a Host line.
HOST_VARIANT_EXPECT = {'valid/031compat': {'method': '-blargh'}}

# Invalid cases lichen accepts (RFC_DEVIATIONS): what the application gets,
# in the corpus' own format.
_TRAILER_CASE = [{'method': 'POST', 'uri': uri('/p'), 'version': (1, 1),
                  'headers': [('HOST', 'example.com'), ('TRANSFER-ENCODING', 'chunked')],
                  'body': b'hello'}]
ACCEPTED_INVALID = {
    'invalid/040': [{'method': 'GET', 'uri': uri('/keep/same/as?invalid/040'), 'version': (1, 0),
                     'headers': [('TRANSFER_ENCODING', 'tricked'), ('CONTENT-LENGTH', '7'),
                                 ('CONTENT_LENGTH', '-1E23')],
                     'body': b'tricked'}],
    'invalid/rfc9110_trailer_forbidden_cl_01': _TRAILER_CASE,
    'invalid/rfc9110_trailer_forbidden_host_01': _TRAILER_CASE,
    'invalid/rfc9110_trailer_forbidden_te_01': _TRAILER_CASE,
    'invalid/rfc9112_leading_crlf_02': [{'method': 'GET', 'uri': uri('/'), 'version': (1, 1),
                                        'headers': [('HOST', 'a')], 'body': b''}],
}

# Invalid cases that are HTTP/1.1 without Host: lichen rejects them as the
# corpus expects, but is then also fed a copy with a Host line, which must be
# rejected too -- except these, valid by the RFC once Host is there.
HOST_VARIANT_ACCEPTED = {
    'invalid/003c': 'RFC 9110 9.1: "method = token"; "-bl" is a token. gunicorn requires '
                    'upper-case methods of 3 or more characters unless '
                    'permit_unconventional_http_method.',
    'invalid/019': 'X-Forwarded-Proto and X-Forwarded-Ssl are not HTTP/1.1 fields; gunicorn '
                   'refuses them when they disagree, lichen reads X-Forwarded-Proto from '
                   'trusted peers only (forwarded_allow_ips) and never X-Forwarded-Ssl, so '
                   'they cannot disagree.',
    'invalid/chunked_07': UNDERSCORE,
}

# How WSGI changes what the corpus expects, per case: CGI-style keys join
# repeated fields with "," and names with "_" are dropped (see UNDERSCORE).
WSGI_MAPPING = {
    'valid/017': 'If-Match twice: HTTP_IF_MATCH "bazinga!,large-sound"',
    'valid/025': 'Transfer-Encoding twice: HTTP_TRANSFER_ENCODING "gzip,chunked"',
    'valid/029': 'Transfer-Encoding twice: HTTP_TRANSFER_ENCODING "identity,chunked"',
    'valid/030': 'Transfer-Encoding twice: HTTP_TRANSFER_ENCODING "identity,chunked"',
    'valid/040_compat': 'Transfer_Encoding and Content_Length (gunicorn header_map=dangerous) '
                        'are not in the environ',
    'invalid/040': 'Transfer_Encoding and Content_Length are not in the environ',
}

# Trailers (valid/012) have no place in a WSGI environ: not compared, but they
# must not leak into it (the header comparison is exact).

HOST_LINE = b'Host: example.com\r\n'

# -- helpers ---------------------------------------------------------------------


def missing_host(data):
    """Does the first request of data, HTTP/1.1, come without a Host line?"""
    p = 0
    while data.startswith(b'\r\n', p):
        p += 2
    eol = data.find(b'\r\n', p)
    if eol < 0 or not data[p:eol].endswith(b' HTTP/1.1'):
        return False
    end = data.find(b'\r\n\r\n', eol)
    head = data[eol + 2:end] if end > eol else b''
    return not any(line.lower().startswith(b'host:') for line in head.split(b'\r\n'))


def _message_len(data, limits):
    """Bytes of the first message of data (head and body), by the probes; None
    if it does not parse."""
    r = _lichen.parse_request(data, **limits)
    if not isinstance(r, dict):
        return None, r
    n = r['consumed']
    if r['chunked']:
        d = _lichen.decode_chunked(data[n:])
        if not isinstance(d, tuple):
            return None, r
        n += d[1]
    elif r['content_length'] > 0:
        n += r['content_length']
    return n, r


def with_host(data, limits, first_only=False):
    """data with a Host line added after the request line of every HTTP/1.1
    request that has none."""
    out = bytearray()
    while data:
        if not missing_host(data):
            msg = data
        else:
            eol = data.find(b'\r\n', len(data) - len(data.lstrip(b'\r\n')))
            msg = data[:eol + 2] + HOST_LINE + data[eol + 2:]
        if first_only:
            return bytes(out + msg)
        n, r = _message_len(msg, limits)
        if n is None or not r['keepalive']:
            return bytes(out + msg)
        out += msg[:n]
        data = msg[n:]
    return bytes(out)


def wsgi_headers(headers):
    """The environ keys the corpus' header list maps to."""
    env = {}
    for name, value in headers:
        if '_' in name:
            continue
        key = name.replace('-', '_')
        if key not in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            key = 'HTTP_' + key
        env[key] = env[key] + ',' + value if key in env else value
    return env


def header_keys(environ):
    return {k: v for k, v in environ.items()
            if k.startswith('HTTP_') or k in ('CONTENT_TYPE', 'CONTENT_LENGTH')}


def _send_lines(data):
    """treq.request.send_lines."""
    pos = data.find(b'\r\n')
    while pos > 0:
        yield data[:pos + 2]
        data = data[pos + 2:]
        pos = data.find(b'\r\n')
    if data:
        yield data


def _send_random(data, seed):
    """treq.request.send_random, seeded."""
    rnd = random.Random(seed)
    maxs = max(1, round(len(data) / 10))
    read = 0
    while read < len(data):
        n = rnd.randint(1, maxs)
        yield data[read:read + n]
        read += n


DRIP = 48  # byte by byte: the first DRIP bytes each after a pause


def _send_bytes(data):
    for i in range(len(data)):
        if i < DRIP:
            time.sleep(0.001)
        yield data[i:i + 1]


def split_modes(name, data):
    yield 'whole', [data]
    yield 'lines', list(_send_lines(data))
    yield 'bytes', _send_bytes(data)
    for i in range(5):
        seed = zlib.crc32(name.encode()) + i
        yield 'random%d' % i, list(_send_random(data, seed))


def feed(conn, pieces):
    """Send pieces one by one; stop early once the server has closed (what is
    left would only be refused)."""
    for piece in pieces:
        if select.select([conn.sock], [], [], 0)[0]:
            try:
                if conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b'':
                    return False
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
        if not conn.try_send(piece):
            return False
    return True


class App:
    """Records each request's environ (strings only) and reads its body."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []
        self.calls = 0

    def reset(self):
        with self.lock:
            self.records = []
            self.calls = 0

    def __call__(self, environ, start_response):
        with self.lock:
            self.calls += 1
        rec = {k: v for k, v in environ.items() if isinstance(v, str)}
        body = environ['wsgi.input'].read()  # raises on a broken body
        rec['body'] = body
        with self.lock:
            self.records.append(rec)
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'ok %d' % len(body)]


def check_record(rec, exp, where):
    want = {
        'REQUEST_METHOD': exp['method'],
        'RAW_URI': exp['uri']['raw'],
        'SERVER_PROTOCOL': 'HTTP/%d.%d' % exp['version'],
        'QUERY_STRING': exp['uri']['query'],
    }
    got = {k: rec.get(k) for k in want}
    raw = exp['uri']['raw']
    if raw.startswith('/') or '://' in raw:
        want['PATH_INFO'] = urllib.parse.unquote_to_bytes(exp['uri']['path']).decode('latin-1')
        got['PATH_INFO'] = rec.get('PATH_INFO')
    assert got == want, where
    assert header_keys(rec) == wsgi_headers(exp['headers']), where
    assert rec['body'] == exp['body'], where


def _closes_after(exp):
    conn = [v.lower() for k, v in exp['headers'] if k == 'CONNECTION']
    if exp['version'] == (1, 0):
        return 'keep-alive' not in conn
    return 'close' in conn


def run_accepted(srv, app, name, data, expect, rejected_at=None, status=None):
    """Every split of data: the requests of expect reach the app as expected;
    with rejected_at=k the k-th request is answered `status` and the
    connection closes."""
    n_ok = len(expect) if rejected_at is None else rejected_at
    for mode, pieces in split_modes(name, data):
        where = '%s sent %s' % (name, mode)
        app.reset()
        with support.Conn(srv.address) as c:
            feed(c, pieces)
            for i in range(n_ok):
                r = c.read_response()
                assert r.status == 200, (where, i, r)
            if rejected_at is not None:
                r = c.read_response()
                assert r.status == status, (where, r)
                c.expect_close(3)
            elif _closes_after(expect[-1]) or len(expect) == 0:
                c.expect_close(3)
        assert support.wait_for(lambda: len(app.records) >= n_ok, 3), where
        with app.lock:
            records = list(app.records)
            calls = app.calls
        assert calls == n_ok, (where, calls)
        for i, (rec, exp) in enumerate(zip(records, expect)):
            check_record(rec, exp, '%s request %d' % (where, i))


def run_rejected(srv, app, name, data, limits, incomplete=False):
    """Every split of data: a status in statuses (or, for a request the peer
    left incomplete, possibly none), then close; nothing reaches the app."""
    for mode, pieces in split_modes(name, data):
        where = '%s sent %s' % (name, mode)
        app.reset()
        with support.Conn(srv.address, timeout=3) as c:
            if feed(c, pieces) and incomplete:
                # The FIN goes separately: a FIN that arrives together with
                # the last bytes is not always noticed by the engine (reported).
                time.sleep(0.05)
                c.sock.shutdown(socket.SHUT_WR)
            try:
                r = c.read_response()
            except support.IncompleteResponse as e:
                assert incomplete and (e.response is None or not e.response.status), (where, e)
            else:
                assert r.status in REJECT_STATUSES, (where, r)
                c.expect_close(3)
        time.sleep(0.01)
        with app.lock:
            assert not app.records, (where, app.records)
            calls = app.calls
        # A body error found after the head was passed on: the app may have
        # been called, but its read of wsgi.input failed.
        assert calls == 0 or body_error(data, limits), (where, calls)


def body_error(data, limits):
    """The first request's head is fine, its body is broken or cut short."""
    r = _lichen.parse_request(data, **limits)
    if not isinstance(r, dict):
        return False
    if r['chunked']:
        return not isinstance(_lichen.decode_chunked(data[r['consumed']:]), tuple)
    return len(data) - r['consumed'] < r['content_length']


def is_incomplete(data, limits):
    """The first request is cut short: head or chunked body unfinished."""
    r = _lichen.parse_request(data, **limits)
    if r is None:
        return True
    if not isinstance(r, dict):
        return False
    if r['chunked']:
        return _lichen.decode_chunked(data[r['consumed']:]) is None
    return len(data) - r['consumed'] < r['content_length']


REJECT_STATUSES = set(range(400, 500)) | {501, 505}


def start(serve, case):
    app = App()
    return serve(app, **case.limits), app


# -- tests -----------------------------------------------------------------------

VALID = [c for c in CASES if c.kind == 'valid']
INVALID = [c for c in CASES if c.kind == 'invalid']


def test_corpus_is_complete():
    assert len(VALID) == 62 and len(INVALID) == 81, (len(VALID), len(INVALID))
    for table in (RFC_DEVIATIONS, DEVIATION_STATUS, ACCEPTED_INVALID, HOST_VARIANT_ACCEPTED,
                  WSGI_MAPPING):
        assert set(table) <= set(BY_NAME), set(table) - set(BY_NAME)
    assert set(ACCEPTED_INVALID) == {n for n in RFC_DEVIATIONS if n.startswith('invalid/')}
    assert set(DEVIATION_STATUS) <= set(RFC_DEVIATIONS)
    # a valid case with an HTTP/1.1 request without Host is a deviation, and
    # says so; no other is
    for c in VALID:
        lacks = with_host(c.data, c.limits) != c.data
        assert lacks == (MISSING_HOST in RFC_DEVIATIONS.get(c.name, '')), c.name


def test_wsgi_mapping_is_accounted_for_per_case():
    lossy = set()
    for c in VALID:
        for exp in c.expect:
            names = [n for n, _ in exp['headers']]
            if len(set(names)) != len(names) or any('_' in n for n in names):
                lossy.add(c.name)
    for name, expect in ACCEPTED_INVALID.items():
        names = [n for exp in expect for n, _ in exp['headers']]
        if any('_' in n for n in names):
            lossy.add(name)
    assert lossy == set(WSGI_MAPPING)


def test_decoding_rules_match_treq():
    with open(os.path.join(_extract(), 'treq.py'), 'rb') as f:
        src = f.read()
    for stmt in TREQ_DECODING:
        assert stmt in src, stmt


def _first_rejected(case):
    """Index of the first request of a valid case lichen answers with an error."""
    rest = case.data
    for i in range(len(case.expect)):
        n, r = _message_len(rest, case.limits)
        if n is None:
            return i
        rest = rest[n:]
    return None


@pytest.mark.parametrize('case', VALID, ids=lambda c: c.name)
def test_valid(serve, case):
    srv, app = start(serve, case)
    if case.name not in RFC_DEVIATIONS:
        run_accepted(srv, app, case.name, case.data, case.expect)
        return
    if RFC_DEVIATIONS[case.name] == INCOMPLETE:
        run_rejected(srv, app, case.name, case.data, case.limits, incomplete=True)
        return
    host_only = case.name not in DEVIATION_STATUS
    status = 400 if missing_host(case.data) or host_only else DEVIATION_STATUS[case.name]
    k = _first_rejected(case)
    assert k is not None, 'deviation accepted: %s' % case.name
    run_accepted(srv, app, case.name, case.data, case.expect[:k], rejected_at=k, status=status)
    if MISSING_HOST in RFC_DEVIATIONS[case.name]:
        fixed = with_host(case.data, case.limits)
        expect = [dict(e, headers=[('HOST', 'example.com')] + list(e['headers']))
                  if ('HOST' not in [n for n, _ in e['headers']] and e['version'] == (1, 1))
                  else e for e in case.expect]
        if host_only:
            expect = [dict(e, **HOST_VARIANT_EXPECT.get(case.name, {})) for e in expect]
            run_accepted(srv, app, case.name + '+Host', fixed, expect)
        else:
            run_accepted(srv, app, case.name + '+Host', fixed, [], rejected_at=0,
                         status=DEVIATION_STATUS[case.name])


@pytest.mark.parametrize('case', INVALID, ids=lambda c: c.name)
def test_invalid(serve, case):
    srv, app = start(serve, case)
    if case.name in RFC_DEVIATIONS:
        run_accepted(srv, app, case.name, case.data, ACCEPTED_INVALID[case.name])
        return
    incomplete = is_incomplete(case.data, case.limits)
    run_rejected(srv, app, case.name, case.data, case.limits, incomplete)
    if missing_host(case.data):
        fixed = with_host(case.data, case.limits, first_only=True)
        if case.name in HOST_VARIANT_ACCEPTED:
            n, r = _message_len(fixed, case.limits)
            assert n is not None, (case.name, r)
        else:
            run_rejected(srv, app, case.name + '+Host', fixed, case.limits, incomplete)


def _prefix_check(data, limits, final, where):
    for i in range(len(data)):
        r = _lichen.parse_request(data[:i], **limits)
        assert r is None or r == final, (where, i, r, final)


@pytest.mark.parametrize('case', CASES, ids=lambda c: c.name)
def test_parse_request(case):
    lim = case.limits
    final = _lichen.parse_request(case.data, **lim)
    _prefix_check(case.data, lim, final, case.name)
    if RFC_DEVIATIONS.get(case.name) == INCOMPLETE:
        assert body_error(case.data, lim), case.name
        return
    if case.kind == 'invalid' and case.name not in RFC_DEVIATIONS:
        if final is None or isinstance(final, dict):
            # head fine: the body is broken or cut short
            assert isinstance(final, dict) or final is None, final
            if isinstance(final, dict):
                d = _lichen.decode_chunked(case.data[final['consumed']:])
                assert final['chunked'] and not isinstance(d, tuple), (case.name, final, d)
        else:
            assert final in REJECT_STATUSES, (case.name, final)
        return
    expect = case.expect or ACCEPTED_INVALID[case.name]
    rejected = case.kind == 'valid' and case.name in RFC_DEVIATIONS
    rest = case.data
    for i, exp in enumerate(expect):
        where = '%s request %d' % (case.name, i)
        r = _lichen.parse_request(rest, **lim)
        if rejected and isinstance(r, int):
            if i:
                _prefix_check(rest, lim, r, where)
            want = 400 if missing_host(rest) else DEVIATION_STATUS[case.name]
            assert r == want, (where, r)
            return
        assert isinstance(r, dict), (where, r)
        keep = 'dangerous' == case.settings.get('header_map') or case.name in ACCEPTED_INVALID
        got = {
            'method': r['method'].decode('latin-1'),
            'target': r['target'].decode('latin-1'),
            'version': (1, r['minor_version']),
            'headers': [(n.decode('latin-1').upper(), v.decode('latin-1'))
                        for n, v in r['headers'] if keep or b'_' not in n],
        }
        want = {'method': exp['method'], 'target': exp['uri']['raw'], 'version': exp['version'],
                'headers': list(exp['headers'])}
        assert got == want, where
        n = r['consumed']
        if r['chunked']:
            d = _lichen.decode_chunked(rest[n:])
            assert isinstance(d, tuple), (where, d)
            body, used = d
            n += used
        else:
            body = rest[n:n + max(r['content_length'], 0)]
            n += len(body)
        assert body == exp['body'], where
        rest = rest[n:]
    assert not rejected, 'deviation accepted: %s' % case.name
