"""The proxy's plain parts: its limits, one direction of a proxied connection (:class:`_Flow`), a proxied
connection (:class:`_Conn`) and the socket helpers (a port kept reserved while down, selector interest,
draining) -- what :class:`harness.netproxy.LinkProxy`'s selector thread works on."""

from __future__ import annotations

import selectors
import socket
import struct
from collections import deque
from dataclasses import dataclass, field

CHUNK = 65536
HOLD_LIMIT = 4 << 20  # bytes buffered per direction before the proxy stops reading (TCP backpressure)
ANSWER_TIMEOUT = 5.0  # a fault method waits at most this long for the proxy thread to apply it
BACKLOG = 128
IDLE_WAKE = 1.0  # the thread is woken by its socketpair; this only bounds each wait
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, the peer sees "reset by peer"
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_WAKE, _LISTEN = "wake", "listen"


@dataclass
class _Flow:
    """One direction of a connection: chunks read and not yet written, as (due time, bytes)."""

    chunks: deque[tuple[float, bytes]] = field(default_factory=deque)
    size: int = 0
    eof: bool = False  # the source closed its sending side
    shut: bool = False  # ... and, after the last byte, the destination's sending side was shut too
    blocked: bool = False  # the destination's send buffer is full: wait until it is writable


@dataclass(eq=False)
class _Conn:
    """A proxied connection: the accepted client socket and its own upstream socket."""

    client: socket.socket
    upstream: socket.socket | None = None  # None while a partition holds the connect back
    connected: bool = False
    out: _Flow = field(default_factory=_Flow)  # client -> upstream
    back: _Flow = field(default_factory=_Flow)  # upstream -> client
    masks: dict[socket.socket, int] = field(default_factory=dict)  # registered selector events
    closed: bool = False


def _bind_reserved(host: str) -> socket.socket:
    """A socket bound to a free port given explicitly, so shutting its listening down keeps the port.

    A port bound as 0 is released when listening stops; one bound by number stays reserved.  The
    number comes from a probe socket bound first, both with SO_REUSEADDR (neither listens yet); the
    flag is then cleared so that, while down, no other socket can bind the port either.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, 0))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, probe.getsockname()[1]))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        probe.close()


def _interest(inbound: _Flow, outbound: _Flow) -> int:
    """Selector events for a socket that is the source of ``inbound`` and destination of ``outbound``."""
    readable = not inbound.eof and inbound.size < HOLD_LIMIT
    return (_READ if readable else 0) | (_WRITE if outbound.blocked else 0)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except OSError:  # EAGAIN: drained
        pass
