"""Hypothesis strategy: requests assembled from well-formed and hostile
fragments, then optionally hit by one byte-level mutation."""

from hypothesis import strategies as st

from .corpus import CL_FORMS, METHODS, ODD, TARGETS, TE_FORMS

NAMES = [b'Host', b'X-A', b'Content-Length', b'Transfer-Encoding',
         b'Connection', b'content-length', b'transfer-encoding', b'X_A',
         b'Expect', b'Upgrade', b'Content_Length', b'Transfer_Encoding']
SEPS = [b': ', b':', b':  ', b' : ', b':\t', b'\t:', b'::']
VALUES = {
    b'content-length': CL_FORMS,
    b'transfer-encoding': TE_FORMS,
    b'host': [b'example.com', b'a:80', b'', b'a b', b'[::1]:8'],
    b'connection': [b'close', b'keep-alive', b'Upgrade', b'close, te'],
}
GENERIC = [b'v', b'', b'a b', b'"q"', b'\x80\xff', b'x' * 50]
EOLS = [b'\r\n'] * 12 + [b'\n', b'\r', b'\r\r\n']
SIZE_FMTS = [b'%x', b'%X', b'0%x', b'%x;e', b'%x;e=v', b'%x;e="v"', b'%x ',
             b'%x ;e', b'0x%x', b'+%x', b'%x;']


@st.composite
def requests(draw):
    method = draw(st.sampled_from(METHODS[:14]))
    target = draw(st.sampled_from(TARGETS))
    version = draw(st.sampled_from([b'HTTP/1.1'] * 4 + [b'HTTP/1.0',
                                                         b'HTTP/1.2']))
    lines = [method + b' ' + target + b' ' + version]
    nhead = draw(st.integers(0, 4))
    if draw(st.booleans()):
        lines.append(b'Host: example.com')
    for _ in range(nhead):
        name = draw(st.sampled_from(NAMES))
        sep = draw(st.sampled_from(SEPS[:1] * 6 + SEPS))
        pool = VALUES.get(name.lower(), GENERIC)
        lines.append(name + sep + draw(st.sampled_from(pool)))
    if draw(st.booleans()):  # the occasional folded line
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from([b' x', b'\tchunked'])))
    framing = draw(st.sampled_from(['none', 'length', 'chunked']))
    payload = draw(st.binary(max_size=20))
    body = b''
    if framing == 'length':
        lines.append(b'Content-Length: %d' % len(payload))
        body = payload
    elif framing == 'chunked':
        lines.append(b'Transfer-Encoding: chunked')
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)),
                                    max_size=3)))
        pieces, prev = [], 0
        for c in cuts + [len(payload)]:
            if c > prev:
                pieces.append(payload[prev:c])
            prev = c
        for p in pieces:
            fmt = draw(st.sampled_from(SIZE_FMTS[:3] * 4 + SIZE_FMTS))
            body += (fmt % len(p)) + b'\r\n' + p + b'\r\n'
        body += b'0\r\n'
        if draw(st.booleans()):
            body += draw(st.sampled_from([b'X: y', b'X:y', b'X : y',
                                          b'Content-Length: 5'])) + b'\r\n'
        body += b'\r\n'
    eol = draw(st.sampled_from(EOLS))
    data = b''
    for line in lines:
        data += line + (eol if draw(st.integers(0, 7)) == 0 else b'\r\n')
    data += b'\r\n' + body
    mutation = draw(st.sampled_from(['none'] * 3 + ['insert', 'replace',
                                                     'delete']))
    if mutation != 'none' and data:
        i = draw(st.integers(0, len(data) - 1))
        b = draw(st.sampled_from(ODD))
        if mutation == 'insert':
            data = data[:i] + b + data[i:]
        elif mutation == 'replace':
            data = data[:i] + b + data[i + 1:]
        else:
            data = data[:i] + data[i + 1:]
    return data
