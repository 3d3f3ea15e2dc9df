"""lichen: a WSGI server with an HTTP/1.1 engine written in C."""

__version__ = "0.1.0"

from .config import ConfigError  # noqa: E402
from .server import BindError, Server, live_counts, serve  # noqa: E402

__all__ = ["Server", "serve", "live_counts", "ConfigError", "BindError",
           "__version__"]
