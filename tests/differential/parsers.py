"""One adapter per parser, each returning an Outcome for a byte string that
holds (at most) one request and its body.

Outcome.kind is 'accept' (head and body complete), 'reject' or 'incomplete'.
For an accepted request the fields are normalised the same way for every
parser: header names lower-cased, values stripped of OWS, the version as
(major, minor), framing as ('length', n), ('chunked',) or ('none',), the
decoded body, and `consumed`, the bytes of the message (head + body)."""

from dataclasses import dataclass, field

import h11
import llhttp

from lichen import _lichen

OWS = b' \t'


@dataclass
class Outcome:
    kind: str
    detail: str = ''
    method: bytes = b''
    target: bytes = b''
    version: tuple = ()
    headers: tuple = ()
    framing: tuple = ()
    body: bytes = b''
    consumed: int = 0
    extra: dict = field(default_factory=dict)

    def key(self):
        """What must agree between two parsers that both accept."""
        return (self.method, self.target, self.version, self.headers,
                self.framing, self.body, self.consumed)


def _norm_headers(pairs):
    return tuple((bytes(n).lower(), bytes(v).strip(OWS)) for n, v in pairs)


# ---- lichen ----------------------------------------------------------------

def parse_lichen(data):
    r = _lichen.parse_request(data)
    if r is None:
        return Outcome('incomplete', 'head')
    if isinstance(r, int):
        return Outcome('reject', str(r))
    head = r['consumed']
    rest = data[head:]
    if r['chunked']:
        framing = ('chunked',)
        d = _lichen.decode_chunked(rest)
        if d is None:
            return Outcome('incomplete', 'chunked body')
        if isinstance(d, int):
            return Outcome('reject', 'chunked %d' % d)
        body, used = d
    elif r['content_length'] >= 0:
        framing = ('length', r['content_length'])
        if len(rest) < r['content_length']:
            return Outcome('incomplete', 'body')
        body, used = rest[:r['content_length']], r['content_length']
    else:
        framing = ('none',)
        body, used = b'', 0
    return Outcome('accept', method=r['method'], target=r['target'],
                   version=(1, r['minor_version']),
                   headers=_norm_headers(r['headers']), framing=framing,
                   body=body, consumed=head + used,
                   extra={'keepalive': r['keepalive']})


# ---- llhttp (strict: every lenient_* flag left off) -------------------------

class _LLRequest(llhttp.Request):
    def __init__(self):
        self.url = b''
        self.hdrs = []
        self._in_value = False
        self.body = b''
        self.head_done = False
        self.done = False
        self.cl = None
        self.trailers = []

    def on_url(self, b):
        self.url += bytes(b)

    def _cur(self):
        return self.trailers if self.head_done else self.hdrs

    def on_header_field(self, b):
        lst = self._cur()
        if self._in_value or not lst:
            lst.append([b'', b''])
            self._in_value = False
        lst[-1][0] += bytes(b)

    def on_header_value(self, b):
        self._in_value = True
        self._cur()[-1][1] += bytes(b)

    def on_header_field_complete(self):
        self._in_value = True  # a value (possibly empty) follows

    def on_headers_complete(self):
        self.head_done = True
        self.cl = self.content_length
        self._in_value = False

    def on_body(self, b):
        self.body += bytes(b)

    def on_message_complete(self):
        self.done = True
        self.pause()


def parse_llhttp(data):
    p = _LLRequest()
    for name in dir(p):
        if name.startswith('lenient_'):
            assert getattr(p, name) is False, name
    try:
        n = p.execute(data)
    except llhttp.Error as e:
        return Outcome('reject', type(e).__name__)
    if not p.done:
        return Outcome('incomplete', 'head' if not p.head_done else 'body')
    hdrs = _norm_headers(p.hdrs)
    names = [h[0] for h in hdrs]
    if b'transfer-encoding' in names:
        framing = ('chunked',)
    elif p.cl is not None:
        framing = ('length', p.cl)
    else:
        framing = ('none',)
    return Outcome('accept', method=p.method.encode(), target=p.url,
                   version=(p.major, p.minor), headers=hdrs, framing=framing,
                   body=p.body, consumed=n,
                   extra={'keepalive': p.should_keep_alive})


# ---- h11 -------------------------------------------------------------------

def parse_h11(data):
    c = h11.Connection(h11.SERVER)
    c.receive_data(data)
    req = None
    body = b''
    try:
        while True:
            ev = c.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return Outcome('incomplete', 'head' if req is None else 'body')
            if isinstance(ev, h11.Request):
                req = ev
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
            else:
                return Outcome('reject', 'event %r' % (ev,))
    except h11.RemoteProtocolError as e:
        return Outcome('reject', str(e)[:80])
    hdrs = _norm_headers(req.headers.raw_items())
    names = [h[0] for h in hdrs]
    if b'transfer-encoding' in names:
        framing = ('chunked',)
    elif b'content-length' in names:
        framing = ('length', int(dict(hdrs)[b'content-length']))
    else:
        framing = ('none',)
    major, minor = req.http_version.split(b'.')
    return Outcome('accept', method=req.method, target=req.target,
                   version=(int(major), int(minor)), headers=hdrs,
                   framing=framing, body=body,
                   consumed=len(data) - len(c.trailing_data[0]))


PARSERS = {'lichen': parse_lichen, 'llhttp': parse_llhttp, 'h11': parse_h11}
