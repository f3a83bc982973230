"""The two systemd protocols the daemon speaks: socket activation and sd_notify.

Both are a few lines of socket code, written here rather than pulling in a binding.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping

SD_LISTEN_FDS_START = 3


def inherited_socket(environ: Mapping[str, str] | None = None) -> socket.socket | None:
    """The listening socket systemd passed us (``LISTEN_FDS``/``LISTEN_PID``), if any."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    if count < 1:
        return None
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    os.set_inheritable(sock.fileno(), False)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children
    return sock


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``READY=1``) to ``NOTIFY_SOCKET``; False when not under systemd."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(message.encode("utf8"), address)
        return True
    return False
