"""The local control socket: ``shadowd status | reload | flush`` talk to the service here.

Protocol: a UNIX stream socket; the client sends one JSON line ``{"cmd": "status"}`` and reads
one JSON line back: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
Permissions: the socket is created with mode 0600 inside a directory the service owns, so only
the service user (and root) can reach it; nothing received is ever evaluated, a command is only
a key into the handler table.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import ShadowdError

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/shadowd/control.sock"
_MAX_REQUEST_BYTES = 4096


class ControlServer:
    """Serves ``handlers[cmd]() -> JSON-able`` on a UNIX socket, one thread, short requests."""

    def __init__(self, path: str | Path, handlers: dict[str, Callable[[], object]]):
        self.path = Path(path)
        self._handlers = dict(handlers)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # the socket file is born 0600: no window where it is wider
        try:
            sock.bind(str(self.path))
        except OSError as err:
            sock.close()
            raise ShadowdError(
                f"cannot create control socket {self.path}: {err.strerror}; "
                "check the directory exists and is writable by the service user"
            ) from err
        finally:
            os.umask(old_umask)
        sock.listen(8)  # blocking accept: the thread sleeps until a client comes; stop() wakes it
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="shadowd-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stop.is_set():
                    return
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    self._answer(conn)
                except Exception:  # a bad client never takes the server down
                    log.exception("control request failed")

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\n" not in data and len(data) < _MAX_REQUEST_BYTES:
            chunk = conn.recv(_MAX_REQUEST_BYTES)
            if not chunk:
                break
            data += chunk
        try:
            request = json.loads(data.split(b"\n", 1)[0] or b"{}")
            cmd = request.get("cmd") if isinstance(request, dict) else None
        except ValueError:
            cmd = None
        handler = self._handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            reply = {"ok": False, "error": f"unknown command {cmd!r}; known: {sorted(self._handlers)}"}
        else:
            try:
                reply = {"ok": True, "result": handler()}
            except ShadowdError as err:
                reply = {"ok": False, "error": str(err)}
        conn.sendall(json.dumps(reply, default=str).encode() + b"\n")

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # Linux: a blocked accept() returns EINVAL
            except OSError:
                pass
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def request(path: str | Path, cmd: str, timeout_s: float = 5.0) -> object:
    """Send one command to a running service and return its result.

    Raises ShadowdError when the service is not running or refuses the command.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as err:
        raise ShadowdError(
            f"no shadowd service answers on {path}; start it (systemctl start shadowd) "
            "or pass --socket with the path the service uses"
        ) from err
    except PermissionError as err:
        raise ShadowdError(f"permission denied on {path}; run as the shadowd user or root") from err
    with sock:
        sock.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        reply = json.loads(data)
    except ValueError as err:
        raise ShadowdError(f"garbled reply from {path}: {data[:80]!r}") from err
    if not reply.get("ok"):
        raise ShadowdError(f"service refused {cmd!r}: {reply.get('error')}")
    return reply.get("result")
