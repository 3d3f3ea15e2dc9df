"""Input families: explicit mutations of well-formed requests, one family per
class of parser disagreement that has led to request smuggling in other
servers (the CVEs are named in docs/conformance/differential.md)."""

CRLF = b'\r\n'


def build(method=b'GET', target=b'/', version=b'HTTP/1.1', headers=(),
          body=b'', eol=CRLF, sp=b' ', host=True):
    """A request from parts. headers are raw lines (without line ending)."""
    lines = [method + sp + target + sp + version]
    if host:
        lines.append(b'Host: example.com')
    lines.extend(headers)
    return eol.join(lines) + eol + eol + body


def chunked(chunks, trailers=(), size_fmt=None, eol=CRLF, last=b'0'):
    """A chunked body: chunks is a list of bytes; size_fmt(n) -> size line."""
    out = b''
    for c in chunks:
        size = size_fmt(len(c)) if size_fmt else b'%x' % len(c)
        out += size + eol + c + eol
    out += last + eol
    for t in trailers:
        out += t + eol
    return out + eol


def post_chunked(body_bytes, **kw):
    return build(b'POST', headers=[b'Transfer-Encoding: chunked'],
                 body=body_bytes, **kw)


ODD = [b'\x00', b'\x01', b'\x08', b'\t', b' ', b'\x0b', b'\x0c', b'\r', b'\n',
       b'\x1f', b'\x7f', b'\x80', b'\xa0', b'\xff', b'"', b'(', b'/', b';',
       b'=', b'@', b'[', b'_', b',', b':']


def fam_control_bytes():
    """Control bytes and whitespace around header names, colons, values."""
    out = []
    fields = [(b'X-Test', b'abc', b''), (b'Content-Length', b'3', b'abc'),
              (b'Transfer-Encoding', b'chunked', None), (b'Host', b'a', b'')]
    for name, value, body in fields:
        for b in ODD:
            variants = [
                b + name + b': ' + value,                 # before the name
                name[:2] + b + name[2:] + b': ' + value,  # inside the name
                name + b + b': ' + value,                 # before the colon
                name + b':' + b + value,                  # after the colon
                name + b': ' + value[:1] + b + value[1:], # inside the value
                name + b': ' + value + b,                 # end of the value
            ]
            for line in variants:
                if name == b'Transfer-Encoding':
                    data = build(b'POST', headers=[line],
                                 body=chunked([b'abc']))
                elif name == b'Host':
                    data = build(headers=[line], host=False)
                else:
                    data = build(b'POST', headers=[line], body=body)
                out.append(data)
    return out


CL_FORMS = [b'3', b'03', b'+3', b'-3', b' 3', b'3 ', b'\t3\t', b'0x3', b'3_0',
            b'3.0', b'3e0', b'\xd9\xa3', b'\xef\xbc\x93', b'3,3', b'3, 3',
            b'3,4', b'3 3', b'', b',3', b'3,', b'00000000000000000003',
            b'99999999999999999999', b'18446744073709551619', b'1' * 19,
            b'0', b'-0', b'3;', b'"3"', b'3\x00']


def fam_content_length():
    """Content-Length forms, duplicates, folding, and CL with TE."""
    out = []
    for v in CL_FORMS:
        out.append(build(b'POST', headers=[b'Content-Length: ' + v],
                         body=b'abc'))
    for a, b in [(b'3', b'3'), (b'3', b'4'), (b'3', b'03'), (b'3', b' 3'),
                 (b'0', b'3')]:
        out.append(build(b'POST', headers=[b'Content-Length: ' + a,
                                           b'Content-Length: ' + b],
                         body=b'abcd'))
    # folded Content-Length (waitress CVE-2019-16792)
    out.append(build(b'POST', headers=[b'Content-Length: 3', b' 4'],
                     body=b'abcd'))
    out.append(build(b'POST', headers=[b'Content-Length:', b' 3'],
                     body=b'abc'))
    # name spellings (bjoern CVE-2015-0219)
    for n in [b'content-length', b'CONTENT-LENGTH', b'Content_Length',
              b'Content-Length ', b'Content-Length\t', b' Content-Length',
              b'Content-Lengthx', b'Content-Lengt']:
        out.append(build(b'POST', headers=[n + b': 3'], body=b'abc'))
    # CL and TE together, both orders (meinheld, gunicorn)
    body = chunked([b'abc'])
    for hs in ([b'Content-Length: %d' % len(body), b'Transfer-Encoding: chunked'],
               [b'Transfer-Encoding: chunked', b'Content-Length: %d' % len(body)],
               [b'Content-Length: 0', b'Transfer-Encoding: chunked'],
               [b'Content_Length: 3', b'Transfer-Encoding: chunked'],
               [b'Content-Length: 3', b'Transfer_Encoding: chunked']):
        out.append(build(b'POST', headers=hs, body=body))
    for v in (b'0', b'3'):
        out.append(build(b'POST', version=b'HTTP/1.0', host=False,
                         headers=[b'Content-Length: ' + v], body=b'abc'))
    return out


TE_FORMS = [b'chunked', b'Chunked', b'CHUNKED', b' chunked', b'chunked ',
            b'chunked,', b',chunked', b'chunked , ', b', , chunked',
            b'chunked, chunked', b'gzip, chunked', b'chunked, gzip',
            b'identity', b'identity, chunked', b'gzip', b'chunked;q=1',
            b'chunked; a=b', b'"chunked"', b'chunk', b'xchunked', b'chunkedx',
            b'chunked\x0b', b'\x0bchunked', b'chunked\x00', b'ch unked',
            b'', b',', b'gzip,chunked', b'GZIP , CHUNKED', b'compress',
            b'deflate, chunked', b'chunked\xa0', b'\xe2\x80\x8bchunked']


def fam_transfer_encoding():
    """Transfer-Encoding lists and forms (waitress CVE-2019-16786, gunicorn
    CVE-2024-1135 / CVE-2024-6827)."""
    out = []
    body = chunked([b'abc', b'de'])
    for v in TE_FORMS:
        out.append(build(b'POST', headers=[b'Transfer-Encoding: ' + v],
                         body=body))
    for a, b in [(b'chunked', b'chunked'), (b'gzip', b'chunked'),
                 (b'chunked', b'gzip'), (b'identity', b'chunked'),
                 (b'chunked', b'')]:
        out.append(build(b'POST', headers=[b'Transfer-Encoding: ' + a,
                                           b'Transfer-Encoding: ' + b],
                         body=body))
    out.append(build(b'POST', headers=[b'Transfer-Encoding: gzip,',
                                       b' chunked'], body=body))
    for n in [b'transfer-encoding', b'Transfer_Encoding', b'Transfer-Encoding ',
              b'TRANSFER-ENCODING', b'Transfer-Encodings']:
        out.append(build(b'POST', headers=[n + b': chunked'], body=body))
    # TE on HTTP/1.0
    for h in (True, False):
        out.append(build(b'POST', version=b'HTTP/1.0', host=h,
                         headers=[b'Transfer-Encoding: chunked'], body=body))
    # a body that a CL-only reader would take as the next request
    smuggled = b'0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n'
    out.append(build(b'POST', headers=[b'Transfer-Encoding: chunked'],
                     body=smuggled))
    return out


SIZE_FORMS = [
    lambda n: b'%x' % n, lambda n: b'%X' % n, lambda n: b'0%x' % n,
    lambda n: b'%016x' % n, lambda n: b'%017x' % n, lambda n: b'%020x' % n,
    lambda n: b'0x%x' % n, lambda n: b'+%x' % n, lambda n: b'-%x' % n,
    lambda n: b' %x' % n, lambda n: b'%x ' % n, lambda n: b'%x\t' % n,
    lambda n: b'%x;' % n, lambda n: b'%x;a' % n, lambda n: b'%x;a=b' % n,
    lambda n: b'%x;a="b c"' % n, lambda n: b'%x;a="b\\"c"' % n,
    lambda n: b'%x ;a' % n, lambda n: b'%x; a' % n, lambda n: b'%x;a =b' % n,
    lambda n: b'%x;a= b' % n, lambda n: b'%x;a=b ' % n, lambda n: b'%x;a;b' % n,
    lambda n: b'%x;=b' % n, lambda n: b'%x;a=' % n, lambda n: b'%x;a="b' % n,
    lambda n: b'%x;a=b\x00' % n, lambda n: b'%x;a=\x7f' % n,
    lambda n: b'%x;a="\x01"' % n, lambda n: b'%x_' % n, lambda n: b'%x\x00' % n,
    lambda n: b'%xg' % n, lambda n: b'\xef\xbc\x93',
    lambda n: b'%x,%x' % (n, n), lambda n: b'%x\r' % n,
]


def fam_chunk_size():
    """Chunk-size forms: case, leading zeros, 0x, sign, whitespace,
    extensions, overflow."""
    out = []
    for fmt in SIZE_FORMS:
        for chunks in ([b'abc'], [b'0123456789ab'], [b'abc', b'de']):
            out.append(post_chunked(chunked(chunks, size_fmt=fmt)))
    for size in [b'ffffffffffffffff', b'10000000000000000',
                 b'fffffffffffffffff', b'7fffffffffffffff', b'8000000000000000',
                 b'100000000000000000000003']:
        out.append(post_chunked(size + CRLF + b'abc' + CRLF + b'0\r\n\r\n'))
    # last-chunk forms
    for last in [b'00', b'0000000000000000', b'00000000000000000', b'0;a=b',
                 b'0 ', b' 0', b'0x0', b'+0', b'-0']:
        out.append(post_chunked(chunked([b'abc'], last=last)))
    # chunk data not followed by CRLF / size that disagrees with the data
    out.append(post_chunked(b'3\r\nabcd\r\n0\r\n\r\n'))
    out.append(post_chunked(b'3\r\nab\r\n0\r\n\r\n'))
    out.append(post_chunked(b'3\r\nabc0\r\n\r\n'))
    out.append(post_chunked(b'3\r\nabc\n0\r\n\r\n'))
    out.append(post_chunked(b'3\r\nabc\r0\r\n\r\n'))
    out.append(post_chunked(b'3\r\nabcXX0\r\n\r\n'))
    out.append(post_chunked(b'0\r\n\r\n'))
    out.append(post_chunked(b'\r\n3\r\nabc\r\n0\r\n\r\n'))
    return out


TRAILERS = [[b'X: y'], [b'X:y'], [b'X: y', b'Y: z'], [b'X : y'], [b'X\t: y'],
            [b' X: y'], [b'X: y', b' z'], [b'X'], [b':y'], [b'X: y\x00'],
            [b'X: \x7f'], [b'X: \xff'], [b'X: y\rz'], [b'X_Y: z'],
            [b'Content-Length: 5'], [b'Transfer-Encoding: chunked'],
            [b'Host: other'], [b'X: y\nZ: w'], [b'X:'], [b'X: a b c'],
            [b'\x00: y'], [b'X\x7f: y'], [b'X: ' + b'a' * 9000],
            [b'T%d: v' % i for i in range(70)]]


def fam_trailers():
    """Trailer sections (gevent CVE-2023-41419)."""
    out = []
    for t in TRAILERS:
        out.append(post_chunked(chunked([b'abc'], trailers=t)))
    # a trailer section that never ends with the empty line
    out.append(post_chunked(b'3\r\nabc\r\n0\r\nX: y\r\nGET / HTTP/1.1\r\n\r\n'))
    return out


def fam_line_endings():
    """Bare CR and bare LF at every line end of head and chunked body
    (waitress CVE-2019-16785)."""
    out = []
    base = post_chunked(chunked([b'abc'], trailers=[b'X: y']))
    positions = [i for i in range(len(base) - 1) if base[i:i + 2] == CRLF]
    for i in positions:
        out.append(base[:i] + base[i + 1:])            # bare LF
        out.append(base[:i + 1] + base[i + 2:])        # bare CR
        out.append(base[:i] + b'\r\r\n' + base[i + 2:])
        out.append(base[:i] + b'\n\r' + base[i + 2:])
    for eol in (b'\n', b'\r', b'\n\r'):
        out.append(build(b'GET', eol=eol))
        out.append(build(b'POST', headers=[b'Content-Length: 3'], body=b'abc',
                         eol=eol))
    for mid in (b'a\rb', b'a\nb', b'\r', b'\n'):
        out.append(build(headers=[b'X: ' + mid]))
        out.append(build(target=b'/' + mid))
    out.append(CRLF + build())
    out.append(CRLF * 3 + build())
    out.append(b'\n' + build())
    out.append(b'\r' + build())
    out.append(b' ' + build())
    return out


def fam_obs_fold():
    """obs-fold: continuation lines (RFC 9112 5.2)."""
    out = []
    for lead in (b' ', b'\t', b'  ', b' \t'):
        out.append(build(headers=[b'X: a', lead + b'b']))
        out.append(build(headers=[b'X:', lead + b'b']))
        out.append(build(b'POST', headers=[b'Transfer-Encoding: chunked',
                                           lead + b'chunked'],
                         body=chunked([b'abc'])))
        out.append(build(b'POST', headers=[b'Transfer-Encoding:',
                                           lead + b'chunked'],
                         body=chunked([b'abc'])))
        out.append(build(headers=[lead + b'X: a']))
        out.append(build(host=False, headers=[lead + b'Host: a']))
        out.append(build(headers=[b'X: a', lead]))
    return out


def fam_versions():
    out = []
    for v in [b'HTTP/1.0', b'HTTP/1.1', b'HTTP/1.2', b'HTTP/1.9', b'HTTP/0.9',
              b'HTTP/2.0', b'HTTP/3.0', b'HTTP/9.9', b'HTTP/1.01',
              b'HTTP/01.1', b'HTTP/11', b'HTTP/1', b'HTTP/1.', b'http/1.1',
              b'Http/1.1', b'HTTP/1.1 ', b'HTTP/ 1.1', b'HTTP /1.1',
              b'HTTP/1.1\t', b'HTTP/1,1', b'HTTPS/1.1', b'HTTP/\xd9\xa1.1',
              b'', b'HTTP/1.1x', b'HTTP/10.0', b'ICE/1.0', b'RTSP/1.0']:
        out.append(build(version=v))
        out.append(build(version=v, host=False))
    out.append(b'GET /\r\n\r\n')  # HTTP/0.9 simple request
    out.append(b'GET\r\n\r\n')
    return out


METHODS = [b'GET', b'HEAD', b'POST', b'PUT', b'DELETE', b'OPTIONS', b'PATCH',
           b'TRACE', b'CONNECT', b'PROPFIND', b'M-SEARCH', b'PURGE', b'QUERY',
           b'get', b'Get', b'FOO', b'G!T', b"G'T", b'G.T', b'G~T', b'GE T',
           b'GET\t', b'\tGET', b'', b'GE\x00T', b'G\xe9T', b'G(T', b'G:T',
           b'G/T', b'1', b'-', b'A' * 40, b'SOURCE', b'ACL', b'MKCOL',
           b'REPORT', b'SEARCH', b'UNLINK', b'PRI']


def fam_methods():
    out = []
    for m in METHODS:
        target = b'example.com:443' if m == b'CONNECT' else b'/'
        out.append(build(method=m, target=target))
    for sp in (b'  ', b'\t', b'\x0b', b'\x0c'):
        out.append(build(sp=sp))
    return out


TARGETS = [b'/', b'/a/b?c=d&e', b'/a#b', b'#', b'/a?b#c', b'*', b'*x',
           b'http://example.com/a', b'HTTP://EXAMPLE.COM', b'//a', b'a',
           b'example.com:80', b'', b'/a b', b'/a\tb', b'/\x00', b'/\x01',
           b'/\x7f', b'/\x80', b'/\xff', b'/%00', b'/%zz', b'/?', b'?',
           b'/a?b?c', b'/\\', b'/"<>`{|}^', b'/[]', b"/!$&'()*+,;=:@",
           b'/~', b'/' + b'a' * 300, b'/\xc3\xa9']


def fam_targets():
    out = []
    for t in TARGETS:
        out.append(build(target=t))
        out.append(build(method=b'OPTIONS', target=t))
    return out


FAMILIES = {
    'control_bytes': fam_control_bytes,
    'content_length': fam_content_length,
    'transfer_encoding': fam_transfer_encoding,
    'chunk_size': fam_chunk_size,
    'trailers': fam_trailers,
    'line_endings': fam_line_endings,
    'obs_fold': fam_obs_fold,
    'versions': fam_versions,
    'methods': fam_methods,
    'targets': fam_targets,
}
