"""Shared helpers for the static-file tests (test_static.py and
test_static_browser.py): a static tree with a secret beside its root, a
tiny valid PNG, HTTP dates, the application that marks what reached it."""
import email.utils
import gzip
import os
import re
import socket
import struct
import threading
import zlib
from pathlib import Path

# Every regular file of the tree gets this mtime (a fixed second in the
# past), so Last-Modified and If-Modified-Since are exact.
MTIME = 1700000000          # Tue, 14 Nov 2023 22:13:20 GMT

SECRET = b'TOP-SECRET-' + os.urandom(8).hex().encode()

A_TXT = b'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\n'
CSS = b'body { color: rgb(1, 2, 3); }\n'
JS = b'document.title = "identity";\n'
JS_GZ = gzip.compress(b'/* the gzip sibling */ document.title = "gz";\n')
JS_BR = b'\x1b\x2a\x00BR-SIBLING: not decoded by the server, only served'
DOCS_INDEX = b'<!doctype html><title>docs</title><p>docs index</p>\n'
ROOT_INDEX = b'<!doctype html><title>root</title><p>root index</p>\n'
EVIL_JS = b'/* evil.js identity */\n'


def tiny_png(width=3, height=2, rgb=(200, 30, 60)):
    """A valid RGB PNG of width x height, one colour."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    row = b'\x00' + bytes(rgb) * width          # filter 0, then the pixels
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) +
            chunk(b'IDAT', zlib.compress(row * height)) + chunk(b'IEND', b''))


PNG = tiny_png()


def http_date(ts):
    """IMF-fixdate, as a server must send it."""
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(value):
    return email.utils.parsedate_to_datetime(value).timestamp()


def norm_type(value):
    """A Content-Type, lower-cased and without blanks around ';' and '='."""
    return re.sub(r'\s*([;=])\s*', r'\1', (value or '').strip().lower())


# docs/static.md: "<mtime>-<size>" in hex; the mtime may carry a fraction
# ("6553f100.0"), the size is whole.
ETAG_RE = re.compile(r'^"([0-9a-fA-F]+(?:\.[0-9a-fA-F]+)?)-([0-9a-fA-F]+)"$')


def etag_size(etag):
    """The size part of an identity ETag, "<mtime>-<size>" in hex."""
    m = ETAG_RE.match(etag or '')
    assert m, 'ETag %r is not "<mtime>-<size>" in hex' % (etag,)
    return int(m.group(2), 16)


class MarkerApp:
    """The application: answers b'APP:' + PATH_INFO and counts its calls,
    so a test sees both that a request reached it and that one did not."""

    def __init__(self):
        self.lock = threading.Lock()
        self.paths = []

    @property
    def calls(self):
        with self.lock:
            return len(self.paths)

    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        with self.lock:
            self.paths.append(path)
        body = b'APP:' + path.encode('latin-1', 'replace')
        status = '404 Not Found' if path == '/favicon.ico' else '200 OK'
        start_response(status, [('Content-Type', 'text/plain'),
                                ('Content-Length', str(len(body)))])
        return [body]


class Tree:
    """tmp/secret.txt and tmp/outside/secret.txt beside tmp/root, the
    static root; .files maps a path below the root to its bytes."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.root = self.tmp / 'root'
        self.secret = self.tmp / 'secret.txt'
        self.files = {}

    def write(self, rel, data, mtime=MTIME):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        self.files[rel] = data
        return path

    def link(self, rel, target):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        return path


def make_tree(tmp):
    t = Tree(tmp)
    t.root.mkdir()
    t.secret.write_bytes(SECRET + b'\n')
    (t.tmp / 'outside').mkdir()
    (t.tmp / 'outside' / 'secret.txt').write_bytes(SECRET + b' (outside)\n')
    for rel, data in {
        'a.txt': A_TXT,
        'style.css': CSS,
        'app.js': JS,
        'app.js.gz': JS_GZ,
        'app.js.br': JS_BR,
        'img.png': PNG,
        'data.xyz': b'\x00\x01\x02 unknown extension',
        'noext': b'no extension at all',
        'empty.txt': b'',
        'page.html': b'<!doctype html><p>page</p>\n',
        'index.html': ROOT_INDEX,
        'docs/index.html': DOCS_INDEX,
        'docs/other.txt': b'other in docs\n',
        'sub/b.txt': b'bee\n',
        'caf\u00e9.txt': b'cafe with an accent\n',
        'with space.txt': b'a name with a space\n',
        '.env': b'DOTENV_PASSWORD=hunter2\n',
        '.git/config': b'[core]\n\trepositoryformatversion = 0\n',
        'sub/.hidden': b'hidden in sub\n',
        '%2e%2e': b'a file literally named %2e%2e\n',
        '..;': b'a file literally named ..;\n',
        'only_gz.css': b'.only-gz { color: red }\n',
        'only_gz.css.gz': gzip.compress(b'.only-gz { color: green }\n'),
        'only_br.js': b'/* only_br identity */\n',
        'only_br.js.br': b'\x0bONLY-BR-SIBLING',
        'evil.js': EVIL_JS,
        'app.0123abcd.js': b'/* hashed, webpack style */\n',
        'app-0123abcd.js': b'/* hashed, dash */\n',
        'main.3f2a9c1b7d4e.css': b'/* hashed, django style */\n',
        'app.0123abc.js': b'/* 7 hex digits: not hashed */\n',
        'app.0123ABCD.js': b'/* upper case: not hashed */\n',
        'sub/app.0123abcd.js': b'/* hashed, in sub */\n',
        'v1/x.js': b'/* versioned directory */\n',
        'x.js': b'/* not versioned */\n',
        'plain.foo': b'custom type\n',
    }.items():
        t.write(rel, data)
    (t.root / 'emptydir').mkdir()
    t.link('link_in.txt', 'a.txt')
    t.link('sub/up.txt', '../a.txt')
    t.link('link_out.txt', '../secret.txt')
    t.link('link_out_abs.txt', str(t.secret))
    t.link('link_dir_out', '../outside')
    t.link('devnull', '/dev/null')
    t.link('loop', 'loop')
    t.link('evil.js.gz', '../secret.txt')
    os.mkfifo(t.root / 'pipe.txt')
    t.socket_path = None
    sock_path = t.root / 'sock.txt'
    if len(str(sock_path)) < 100:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(str(sock_path))
            t.socket_path = sock_path
        finally:
            s.close()
    return t


def tool_env():
    """The environment for a tool the tests run (curl, chromedriver):
    without the sanitizer run's LD_PRELOAD, which is for Python only."""
    return {k: v for k, v in os.environ.items()
            if k not in ('LD_PRELOAD', 'ASAN_OPTIONS')}
