"""Static files through Python's `requests`, a client applications use:
keep-alive on one session, conditional requests, ranges, a precompressed
sibling decoded by the client, a large file streamed and checked."""
import gzip
import hashlib
import os

import requests


def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'APP:' + environ['PATH_INFO'].encode('latin-1')]


def test_requests_session(serve, tmp_path):
    root = tmp_path / 'public'
    root.mkdir()
    css = b'body { color: #123456 }\n' * 40
    (root / 'site.css').write_bytes(css)
    (root / 'site.css.gz').write_bytes(gzip.compress(css))
    big = os.urandom(8 << 20)
    (root / 'big.bin').write_bytes(big)
    srv = serve(app, static={'/static': str(root)}, static_max_age=600)
    base = 'http://127.0.0.1:%d' % srv.address[1]
    with requests.Session() as s:
        # identity, then gzip decoded by requests: the same text
        r = s.get(base + '/static/site.css',
                  headers={'Accept-Encoding': 'identity'})
        assert r.status_code == 200 and r.content == css
        assert r.headers['Content-Type'] == 'text/css; charset=utf-8'
        assert r.headers['Cache-Control'] == 'public, max-age=600'
        assert r.headers['Vary'] == 'Accept-Encoding'
        etag = r.headers['ETag']
        r = s.get(base + '/static/site.css')  # requests offers gzip
        assert r.headers['Content-Encoding'] == 'gzip'
        assert r.content == css and r.headers['ETag'] != etag
        # conditional
        r = s.get(base + '/static/site.css',
                  headers={'Accept-Encoding': 'identity',
                           'If-None-Match': etag})
        assert r.status_code == 304 and r.content == b''
        r = s.get(base + '/static/site.css',
                  headers={'If-Modified-Since':
                           r.headers['Last-Modified']})
        assert r.status_code == 304
        # a range
        r = s.get(base + '/static/big.bin',
                  headers={'Range': 'bytes=1000-1999'})
        assert r.status_code == 206 and r.content == big[1000:2000]
        # the application, on the same session
        assert s.get(base + '/other').content == b'APP:/other'
        # a large file, streamed
        h = hashlib.sha256()
        with s.get(base + '/static/big.bin', stream=True) as r:
            assert r.headers['Content-Length'] == str(len(big))
            for block in r.iter_content(65536):
                h.update(block)
        assert h.hexdigest() == hashlib.sha256(big).hexdigest()
        r = s.post(base + '/static/site.css', data=b'x')
        assert r.status_code == 405 and r.headers['Allow'] == 'GET, HEAD'
    assert srv.served >= 8
