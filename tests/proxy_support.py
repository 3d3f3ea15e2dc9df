"""Debian's nginx and HAProxy as reverse proxies in front of lichen, for the
tests: each runs in the foreground from a configuration written to a
temporary directory (its pid file, logs and temporary files there too),
listening on 127.0.0.1 only, and is stopped, with every process it made, at
teardown.

The tests write the proxy's own part of the configuration (the server,
upstream, frontend and backend blocks, as docs/deploy.md shows them); the
boilerplate that keeps a proxy inside its directory is here."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

# What every nginx location in front of lichen sets: the headers lichen's
# forwarded_allow_ips reads from a trusted peer.
NGINX_PROXY_HEADERS = '''\
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;'''

NGINX_MAIN = '''\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format upstreams '$status $request_uri upstream=$upstream_addr '
                         'upstream_status=$upstream_status';
    access_log {dir}/access.log upstreams;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{body}
}}
'''

HAPROXY_MAIN = '''\
global
    maxconn 1024
    pidfile {dir}/haproxy.pid

{body}
'''


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def find_exe(name):
    """The Debian package's program (in /usr/sbin, which may not be on
    PATH), or a skip saying how to install it."""
    exe = shutil.which(name)
    if exe is None and os.access('/usr/sbin/' + name, os.X_OK):
        exe = '/usr/sbin/' + name
    if exe is None:
        pytest.skip('%s is not installed (make test-tools, or apt-get '
                    'install %s)' % (name, name))
    return exe


def _children(pid):
    """The pids of a process's children (nginx's workers)."""
    out = []
    try:
        for task in os.listdir('/proc/%d/task' % pid):
            path = '/proc/%d/task/%s/children' % (pid, task)
            with open(path) as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


class Proxy:
    """A proxy process in the foreground; ports are the ones it listens on
    (waited for at start)."""

    name = 'proxy'

    def __init__(self, command, directory, ports):
        self.directory = Path(directory)
        self.ports = list(ports)
        # the proxy is no code of ours: not run under the sanitizers that
        # the ASan run preloads into lichen
        env = {k: v for k, v in os.environ.items()
               if k not in ('LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS')}
        with open(self.directory / 'stderr.log', 'wb') as stderr:
            self.proc = subprocess.Popen(
                command, cwd=str(self.directory), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        self._wait_listening()

    @property
    def port(self):
        return self.ports[0]

    def log(self, name='stderr.log'):
        try:
            return (self.directory / name).read_text(errors='replace')
        except OSError:
            return ''

    def _wait_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(self.ports)
        while waiting:
            try:
                socket.create_connection(('127.0.0.1', waiting[0]),
                                         0.2).close()
                waiting.pop(0)
                continue
            except OSError:
                if self.proc.poll() is not None or \
                        time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        if waiting:
            self.stop()
            pytest.fail('%s did not listen on %s: %s %s' % (
                self.name, waiting, self.log(), self.log('error.log')))

    def stop(self):
        """Stop it at once (SIGTERM: both proxies' fast stop), and every
        child it made; the exit status."""
        children = _children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        for pid in children:  # workers left by a master that died
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.returncode


class Nginx(Proxy):
    """Debian's nginx with `body` inside its http block (servers and
    upstreams; `{dir}` in it is the directory), one worker."""

    name = 'nginx'

    def __init__(self, directory, body, ports):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        exe = find_exe('nginx')
        # a master started as root runs its worker as nobody, who could
        # not open the tests' temporary directories and sockets
        user = ('user %s;' % pwd.getpwuid(os.geteuid()).pw_name
                if os.geteuid() == 0 else '')
        conf = directory / 'nginx.conf'
        conf.write_text(NGINX_MAIN.format(
            dir=directory, user=user, body=body.replace('{dir}',
                                                        str(directory))))
        # -e: the error log from the start (not the packaged path)
        super().__init__([exe, '-p', str(directory), '-e',
                          str(directory / 'error.log'), '-c', str(conf)],
                         directory, ports)

    def access_log(self):
        return self.log('access.log').splitlines()


class HAProxy(Proxy):
    """Debian's HAProxy in the foreground (-db) with `body` after its global
    section (defaults, frontends, backends)."""

    name = 'haproxy'

    def __init__(self, directory, body, ports):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        exe = find_exe('haproxy')
        conf = directory / 'haproxy.cfg'
        conf.write_text(HAPROXY_MAIN.format(dir=directory, body=body))
        check = subprocess.run([exe, '-c', '-f', str(conf)],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        super().__init__([exe, '-db', '-f', str(conf)], directory, ports)


@pytest.fixture
def proxies():
    """start(cls, directory, body, ports) -> a started Nginx or HAProxy,
    stopped at teardown."""
    started = []

    def start(cls, directory, body, ports):
        proxy = cls(directory, body, ports)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
