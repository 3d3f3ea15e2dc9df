"""WSGI application for the deployment tests: who runs it, and what a
child of it inherits."""

import json
import os
import subprocess

# Who imported this module: lichen switches user before it loads the
# application.
IMPORTED_AS = {"uid": os.getuid(), "gid": os.getgid()}


def _fd_state(fd):
    try:
        return "inheritable" if os.get_inheritable(fd) else "cloexec"
    except OSError:
        return "closed"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/whoami":
        body = {"uid": os.getuid(), "euid": os.geteuid(),
                "gid": os.getgid(), "egid": os.getegid(),
                "groups": sorted(os.getgroups()),
                "imported_as": IMPORTED_AS}
    elif path == "/inherited":
        # What a process the application starts would see.
        child = subprocess.run(
            ["sh", "-c", "echo ${LISTEN_PID-unset} ${LISTEN_FDS-unset} "
                         "${LISTEN_FDNAMES-unset}"],
            capture_output=True, text=True, check=True)
        body = {"environ": {k: os.environ.get(k) for k in
                            ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")},
                "child": child.stdout.split(),
                "fds": {fd: _fd_state(fd) for fd in (3, 4)}}
    else:
        body = "deploy app"
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
