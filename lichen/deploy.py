"""What a service needs of the process around the server: the sockets a
service manager passed (systemd's socket activation), the pid file, and
the switch to an unprivileged user once the listeners are bound.

Each is a step of the start-up the command line takes in this order:
umask, activated sockets, pid file checked, listeners bound (lichen.server),
pid file written, privileges dropped, application loaded. A process that
forks workers takes the same steps before it forks.
"""

import grp
import os
import pwd

from .config import ConfigError

__all__ = ["DeployError", "listen_fds", "Account", "account",
           "drop_privileges", "check_files", "PidFile", "apply_umask"]

# systemd's sd_listen_fds(3): the first passed descriptor.
LISTEN_FDS_START = 3


class DeployError(Exception):
    """A step of the start-up failed; str() is one line."""


def listen_fds(environ=None):
    """The listening sockets a service manager passed by socket activation,
    as (fd, name) pairs: fds 3 to 3+N-1 when LISTEN_PID is this process and
    LISTEN_FDS is N, their names from LISTEN_FDNAMES (None when unnamed).
    The three variables are removed from the environment whatever they
    hold, so that no child takes the sockets for its own; the fds are made
    close-on-exec."""
    env = os.environ if environ is None else environ
    pid = env.pop("LISTEN_PID", None)
    count = env.pop("LISTEN_FDS", None)
    names = env.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []  # meant for another process (our parent's child)
        count = int(count)
    except ValueError:
        return []
    if count <= 0:
        return []
    names = names.split(":") if names is not None else []
    if len(names) != count:
        names = [None] * count
    fds = []
    for i in range(count):
        fd = LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
        except OSError as exc:
            raise DeployError(f"socket activation: LISTEN_FDS={count} but "
                              f"fd {fd} is not open ({exc.strerror})"
                              ) from None
        name = names[i]
        fds.append((fd, None if name in (None, "", "unknown") else name))
    return fds


class Account:
    """The user and group to run as: uid and gid (-1: unchanged), and the
    user's name when it has one (for its supplementary groups)."""

    def __init__(self, uid=-1, gid=-1, name=None):
        self.uid, self.gid, self.name = uid, gid, name

    def __bool__(self):
        return self.uid != -1 or self.gid != -1

    @property
    def owner(self):
        """(uid, gid) for os.chown: the owner of files made for it."""
        return self.uid, self.gid


def account(cfg):
    """The Account of the options user and group (ids, as validated): the
    group defaults to the user's own."""
    uid = -1 if cfg["user"] is None else cfg["user"]
    gid = -1 if cfg["group"] is None else cfg["group"]
    name = None
    if uid != -1:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            if gid == -1:
                raise ConfigError(f"user {uid} is not in the user "
                                  "database: give the group too") from None
        else:
            name = entry.pw_name
            if gid == -1:
                gid = entry.pw_gid
    return Account(uid, gid, name)


def drop_privileges(acct):
    """Become acct's user and group for good: supplementary groups (the
    user's, or the group alone), then the gid, then the uid."""
    if not acct:
        return
    uid, gid = acct.uid, acct.gid
    try:
        if gid != -1:
            if acct.name is not None and uid != -1:
                groups = os.getgrouplist(acct.name, gid)
            else:
                groups = [gid]
            if os.geteuid() == 0:
                os.setgroups(groups)
            os.setgid(gid)
        if uid != -1:
            os.setuid(uid)
    except OSError as exc:
        who = []
        if uid != -1:
            who.append(f"user {_user_name(uid)}")
        if gid != -1:
            who.append(f"group {_group_name(gid)}")
        raise DeployError(f"cannot switch to {' and '.join(who)}: "
                          f"{exc.strerror.lower()} (switching needs root)"
                          ) from None


def check_files(cfg, acct):
    """After the switch: the TLS files the engine reads (at start and on
    each SIGHUP) must be readable by the user switched to."""
    if not acct:
        return
    for name in ("certfile", "keyfile", "keyfile_password_file",
                 "ca_certs"):
        path = cfg[name]
        if path is not None and not os.access(path, os.R_OK):
            raise DeployError(
                f"--{name.replace('_', '-')} {path} is not readable by "
                f"user {_user_name(os.getuid())} group "
                f"{_group_name(os.getgid())}, which lichen switched to "
                "(it reads the file anew on SIGHUP)")


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _alive(pid):
    if pid == os.getpid():
        return False  # a pid reused for us (a container restarted)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class PidFile:
    """The pid file: checked before binding (a live owner refuses the
    start), written once the listeners are bound, removed at exit if it
    still holds our pid."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.pid = None  # ours once written

    def _read_raw(self):
        """The pid in the file, None when there is none or it is empty (a
        write cut short), -1 when the file holds something else. Raises
        OSError. (Bytes: no codec to import, for after the switch to a
        user who may not read the Python installation.)"""
        try:
            with open(self.path, "rb") as f:
                text = f.read(64).strip()
        except FileNotFoundError:
            return None
        if not text:
            return None
        return int(text) if text.isdigit() else -1

    def _read(self):
        try:
            pid = self._read_raw()
        except IsADirectoryError:
            raise DeployError(f"pid file {self.path} is a directory") \
                from None
        except OSError as exc:
            raise DeployError(f"cannot read pid file {self.path}: "
                              f"{exc.strerror.lower()}") from None
        if pid == -1:
            raise DeployError(f"pid file {self.path} exists and does not "
                              "hold a process id (not overwritten: remove "
                              "it or choose another path)")
        return pid

    def check(self):
        """Refuse to start when a live process holds the file."""
        pid = self._read()
        if pid is not None and _alive(pid):
            raise DeployError(f"pid file {self.path} names process {pid}, "
                              "which is running: is lichen already running? "
                              "(remove the file if not)")

    def write(self):
        """Write our pid: a new file put in place at once, replacing a
        stale one."""
        self.check()
        pid = os.getpid()
        tmp = f"{self.path}.{pid}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, f"{pid}\n".encode())
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise DeployError(f"cannot write pid file {self.path}: "
                              f"{exc.strerror.lower()}") from None
        self.pid = pid

    def remove(self, log=None):
        """Remove the file if it is still ours; a failure is logged (a
        directory the user we switched to may not write)."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            if self._read_raw() != pid:
                return  # another server's now
            os.unlink(self.path)
        except OSError as exc:
            if log is not None:
                log.warning("cannot remove pid file %s: %s", self.path,
                            (exc.strerror or str(exc)).lower())


def apply_umask(mask):
    """Set the umask (None: leave it)."""
    if mask is not None:
        os.umask(mask)
