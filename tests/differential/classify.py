"""Known differences between lichen and its peers, and the classifier that
matches a disagreement against them.

A disagreement is known when an entry names that peer, lichen's verdict, the
peer's verdict, and a feature that the input has. Features are found by a
deliberately lenient reading of the raw bytes (features()), independent of
all three parsers. Anything else is a disagreement to investigate."""

import re
from dataclasses import dataclass

LLHTTP_METHODS = {
    b'DELETE', b'GET', b'HEAD', b'POST', b'PUT', b'CONNECT', b'OPTIONS',
    b'TRACE', b'COPY', b'LOCK', b'MKCOL', b'MOVE', b'PROPFIND', b'PROPPATCH',
    b'SEARCH', b'UNLOCK', b'BIND', b'REBIND', b'UNBIND', b'ACL', b'REPORT',
    b'MKACTIVITY', b'CHECKOUT', b'MERGE', b'M-SEARCH', b'NOTIFY',
    b'SUBSCRIBE', b'UNSUBSCRIBE', b'PATCH', b'PURGE', b'MKCALENDAR', b'LINK',
    b'UNLINK', b'SOURCE', b'QUERY'}

OWS = b' \t'
CTL = re.compile(rb'[\x00-\x08\x0a-\x1f\x7f]')


@dataclass(frozen=True)
class Known:
    id: str
    peers: tuple       # ('llhttp',), ('h11',) or both
    lichen: tuple      # lichen's verdicts: 'accept', 'reject', 'incomplete'
    peer: tuple        # the peer's verdicts
    feature: str       # what the input must show (see features())
    reason: str


R, A, I = 'reject', 'accept', 'incomplete'
BOTH = ('llhttp', 'h11')

KNOWN_DIFFERENCES = [
    # -- lichen stricter, by the choices in DESIGN.md "Strictness" --
    Known('no-host', ('llhttp',), (R,), (A,), 'no_host',
          'HTTP/1.1 without Host is a 400 (RFC 9112 3.2 MUST); llhttp does '
          'not check Host'),
    Known('host-dup-or-bad', ('llhttp', 'h11'), (R,), (A,), 'host_bad',
          'two Host fields are a 400 (RFC 9112 3.2 MUST), and lichen also '
          'refuses whitespace inside the Host value; llhttp checks neither, '
          'h11 only the count'),
    Known('fragment-in-target', BOTH, (R,), (A,), 'target_fragment',
          "'#' is not a request-target character (RFC 9112 3.2); peers pass "
          'it to the application'),
    Known('content-length-digits', BOTH, (R,), (A, I), 'cl_long',
          'a Content-Length longer than 18 digits (even with leading zeros) '
          'is refused: it cannot be a real body size and overflow checks '
          'differ between parsers'),
    Known('content-length-duplicate', ('h11',), (R,), (A,), 'cl_dup',
          'two Content-Length fields or a list value, even equal, are a 400 '
          '(RFC 9112 6.3 allows either); h11 merges equal values'),
    Known('content-length-with-te', ('h11',), (R,), (A,), 'cl_te',
          'Content-Length with Transfer-Encoding is a 400 (RFC 9112 6.1 '
          'allows it; DESIGN); h11 lets Transfer-Encoding win'),
    Known('te-codings', ('llhttp',), (R,), (A,), 'te_coding',
          'any coding other than a single final chunked is a 501 (DESIGN); '
          'llhttp accepts e.g. "gzip, chunked" and hands the coding to the '
          'application'),
    Known('te-empty', ('llhttp',), (R,), (A,), 'te_empty',
          'a Transfer-Encoding value with no coding ("" or ",") is a 400; '
          'llhttp ignores it'),
    Known('te-empty-element', ('llhttp',), (R,), (A,), 'te_empty_element',
          'a Transfer-Encoding list with an empty element (",chunked", '
          '"chunked,", ", , chunked") is a 400: RFC 9110 5.6.1 lets a '
          'recipient skip empty elements, but a proxy in front may not read '
          'them the same way (DESIGN: the safer choice); llhttp skips '
          'leading ones'),
    Known('te-http10', BOTH, (R,), (A,), 'te_http10',
          'Transfer-Encoding in an HTTP/1.0 request is a 400 (RFC 9112 6.1 '
          'says the message is faulty); both peers decode it'),
    Known('chunk-size-digits', BOTH, (R,), (A, I), 'chunk_size_long',
          'a chunk-size longer than 16 hex digits (even with leading zeros) '
          'is refused at once; peers accept leading zeros or wait for an '
          'overflowing chunk'),
    Known('chunk-ext-grammar', BOTH, (R,), (A,), 'chunk_ext_bad',
          'chunk extensions are held to RFC 9112 7.1.1 (name required, '
          'value token or quoted-string, no CTL, no trailing whitespace); '
          'llhttp strict accepts ";=b" and ";a=", h11 does not look at them'),
    Known('trailer-limits', BOTH, (R,), (A,), 'trailer_limit',
          'trailers are bounded (64 fields, 8 KiB per line); the peers have '
          'no such bound'),
    Known('bare-cr-lf', BOTH, (R,), (A, I), 'bare_eol',
          'a bare CR or LF anywhere (even before the request line) is a 400 '
          '(RFC 9112 2.2 allows either; DESIGN); llhttp skips a stray CR/LF '
          'before the request line, h11 takes LF as a line end'),
    Known('version', BOTH, (R,), (A,), 'version_other',
          'only HTTP/1.0 and HTTP/1.1 are served (505); llhttp accepts 0.9, '
          '2.0 and RTSP/1.0, h11 any HTTP/d.d'),
    Known('request-line-shape', ('llhttp',), (R,), (A,), 'request_line_shape',
          'the request line is exactly method SP target SP version; llhttp '
          'accepts repeated spaces and the HTTP/0.9 "GET /" form'),
    # -- lichen stricter than h11 alone --
    Known('obs-fold', ('h11',), (R,), (A,), 'obs_fold',
          'obs-fold is a 400 (RFC 9112 5.2 allows it; DESIGN); h11 unfolds'),
    Known('ctl-in-value', ('h11',), (R,), (A,), 'ctl_in_value',
          'CTL bytes in a field value are a 400 (RFC 9110 5.5); h11 keeps '
          'them'),
    Known('chunk-line-ws', ('h11',), (R,), (A,), 'chunk_line_ws',
          'whitespace at the end of a chunk-size line is a 400 (BWS is only '
          'allowed before ";"); h11 strips it'),
    # -- lichen more permissive, each allowed by the RFC --
    Known('leading-crlf', ('h11',), (A,), (R,), 'leading_crlf',
          'empty lines before the request line are skipped (RFC 9112 2.2 '
          'SHOULD); h11 refuses them'),
    Known('methods', ('llhttp',), (A,), (R,), 'method_unknown',
          'any token is a method (RFC 9110 9.1); llhttp knows a fixed list '
          'and only upper case'),
    Known('target-form', BOTH, (R,), (A,), 'target_form',
          'the target form is checked against the method (RFC 9112 3.2): '
          'asterisk-form only for OPTIONS, authority-form only for CONNECT, '
          'otherwise origin-form or absolute-form with a valid authority; '
          'both peers accept e.g. "GET *" or "*x" and leave it to the '
          'application'),
    Known('ows-htab', ('llhttp',), (A,), (R,), 'framing_htab',
          'HTAB is OWS around Content-Length and Transfer-Encoding values '
          '(RFC 9110 5.6.3); llhttp strict refuses it there'),
    Known('chunk-ext-bws', BOTH, (A,), (R,), 'chunk_ext_bws',
          'BWS around ";" and "=" in chunk extensions is RFC 9112 7.1.1 '
          'grammar; llhttp strict and h11 refuse it'),
    Known('connect-tunnel', ('llhttp',), (A, R), (A,), 'connect',
          'llhttp ends a CONNECT request at its head and treats what follows '
          'as tunnel data; lichen (a WSGI server, no tunnels) frames it like '
          'any request, so a Content-Length body differs'),
    Known('h11-section-pending', ('h11',), (R,), (I,), 'peer_section_pending',
          'h11 validates header and trailer lines only once the section '
          'has ended; lichen refuses at the first byte that settles it, so '
          'on a truncated section h11 is still waiting'),
    Known('trailer-framing-fields', ('llhttp',), (A,), (R,),
          'trailer_framing',
          'trailer fields are not applied to framing, so Content-Length or '
          'Transfer-Encoding in trailers is harmless and ignored; llhttp '
          'applies header rules to trailers'),
]


# ---- a lenient reading of the input -----------------------------------------

def _split_lines(blob):
    return re.split(rb'\r\n|\n|\r', blob)


def features(data):
    f = set()
    if re.search(rb'(?<!\r)\n|\r(?!\n)', data):
        f.add('bare_eol')
    if data[:1] in (b'\r', b'\n'):
        f.add('leading_crlf')
    rest = data.lstrip(b'\r\n')
    m = re.search(rb'\r?\n\r?\n|\r\r', rest)
    head, body = (rest[:m.start()], rest[m.end():]) if m else (rest, b'')
    lines = _split_lines(head)
    rl = lines[0]
    parts = rl.split(b' ')
    if len(parts) != 3 or not parts[1] or rest[:1] in (b' ', b'\t'):
        f.add('request_line_shape')
    method = parts[0]
    target = parts[1] if len(parts) > 1 else b''
    version = parts[-1] if len(parts) > 1 else b''
    if method == b'CONNECT' and re.search(
            rb'(?im)^(content-length|transfer-encoding)', head):
        f.add('connect')
    if method not in LLHTTP_METHODS:
        f.add('method_unknown')
    if b'#' in target:
        f.add('target_fragment')
    if re.search(rb'[\x80-\xff]', target):
        f.add('target_obs_text')
    method = parts[0] if parts else b''
    if method == b'CONNECT':
        if not re.fullmatch(rb'[A-Za-z0-9.\-]+:[0-9]+', target):
            f.add('target_form')
    elif not (target.startswith(b'/')
              or (target == b'*' and method == b'OPTIONS')
              or re.match(rb'(?i)https?://[^/?\s]+', target)):
        f.add('target_form')
    if version not in (b'HTTP/1.0', b'HTTP/1.1'):
        f.add('version_other')
    fields = []
    for line in lines[1:]:
        if line[:1] in (b' ', b'\t'):
            f.add('obs_fold')
            continue
        name, _, value = line.partition(b':')
        fields.append((name.lower(), value))
    names = [n for n, _ in fields]

    def values(n):
        return [v for k, v in fields if k == n]

    hosts = values(b'host')
    if version == b'HTTP/1.1' and not hosts:
        f.add('no_host')
    if len(hosts) > 1 or any(re.search(rb'[ \t:]|[^\x21-\x7e]',
                                       v.strip(OWS)) for v in hosts):
        f.add('host_bad')
    for _, v in fields:
        if CTL.search(v):
            f.add('ctl_in_value')
    cls = values(b'content-length')
    if len(cls) > 1 or any(b',' in v for v in cls):
        f.add('cl_dup')
    for v in cls:
        if len(v.strip(OWS)) > 18:
            f.add('cl_long')
        if b'\t' in v:
            f.add('framing_htab')
    tes = values(b'transfer-encoding')
    if cls and tes:
        f.add('cl_te')
    for v in tes:
        if b'\t' in v:
            f.add('framing_htab')
        elems = [e.strip(OWS).lower() for e in v.split(b',')]
        if not any(elems):
            f.add('te_empty')
        elif not all(elems):
            f.add('te_empty_element')
        if any(e and e != b'chunked' for e in elems):
            f.add('te_coding')
    if tes and version == b'HTTP/1.0':
        f.add('te_http10')
    if tes:
        _chunked_features(body, f)
    return f


def _chunked_features(body, f):
    lines = _split_lines(body)
    trailer = False
    ntrail = 0
    for line in lines:
        if trailer:
            if not line:
                break
            ntrail += 1
            if len(line) > 8000 or ntrail > 64:
                f.add('trailer_limit')
            name = line.partition(b':')[0].lower()
            if name in (b'content-length', b'transfer-encoding'):
                f.add('trailer_framing')
            if line[:1] in (b' ', b'\t'):
                f.add('obs_fold')
            if CTL.search(line):
                f.add('ctl_in_value')
            continue
        m = re.match(rb'([0-9a-fA-F]+)(.*)$', line, re.S)
        if not m:
            continue
        digits, ext = m.groups()
        if len(digits) > 16:
            f.add('chunk_size_long')
        if ext[-1:] in (b' ', b'\t'):
            f.add('chunk_line_ws')
        if ext.lstrip(OWS).startswith(b';'):
            if re.search(rb'[ \t]', ext.rstrip(OWS)):
                f.add('chunk_ext_bws')
            if re.search(rb';[ \t]*(=|;|$)|=[ \t]*(;|$)|[\x00-\x08\x0a-\x1f'
                         rb'\x7f]|"[^"]*$', ext):
                f.add('chunk_ext_bad')
        if int(digits, 16) == 0 and not ext.strip(OWS).lstrip(b';'):
            trailer = True
        elif int(digits, 16) == 0 and ext.lstrip(OWS).startswith(b';'):
            trailer = True


def _kinds(kind):
    # 'incomplete' means "nothing refused so far": it stands for an accept
    # of the bytes seen, so it matches the entries that name 'accept' too.
    return (kind, A) if kind == I else (kind,)


def classify(data, peer, lichen_kind, peer_kind, peer_detail=''):
    """The Known entry that explains this disagreement, or None."""
    feats = features(data)
    if (peer_kind == I and lichen_kind == R
            and not re.search(rb'\r?\n\r?\n$', data)):
        feats.add('peer_section_pending')
    for k in KNOWN_DIFFERENCES:
        if (peer in k.peers and k.feature in feats
                and any(x in k.lichen for x in _kinds(lichen_kind))
                and any(x in k.peer for x in _kinds(peer_kind))):
            return k
    return None
