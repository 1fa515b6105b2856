"""A loopback TCP proxy for one network link (an actor's database or Redis connections), with faults.

    with LinkProxy(info.host, info.port, name="A") as link:
        conn = dialect.connect(dataclasses.replace(info, host=link.host, port=link.port))
        link.delay(50)          # every chunk forwarded >= 50 ms after it was read, both ways
        link.partition()        # nothing moves either way; bytes are held, not lost
        link.heal()             # what was held is forwarded once, in order
        link.cut()              # every connection reset now; new ones work
        link.down(); link.up()  # refused while down; the same port afterwards

One selector thread owns every socket.  A fault method hands its change to that thread and returns
only once the change is in force, so a fault lands exactly at the scheduling point that placed it.
No maintained library fits: toxiproxy needs its Go daemon, and its timeout toxic (the nearest thing
to a partition) drops what arrives instead of holding it for delivery; the Python packages are
clients of that daemon or alpha.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, TypeVar

from .errors import HarnessError
from .netproxy_io import (
    _LISTEN,
    _READ,
    _RST,
    _WAKE,
    _WRITE,
    ANSWER_TIMEOUT,
    BACKLOG,
    CHUNK,
    IDLE_WAKE,
    _bind_reserved,
    _Conn,
    _drain,
    _Flow,
    _interest,
)

T = TypeVar("T")

class LinkProxy:
    """A loopback TCP proxy to one upstream; faults apply to all of its connections.

    ``down()`` refuses new connections by stopping the listening socket without giving up its port
    (Linux: ``shutdown(SHUT_RD)`` on a listener bound to an explicit port), so a connect gets
    ECONNREFUSED at once — psycopg, PyMySQL and redis-py raise their connection error immediately —
    and ``up()`` listens again on the same port, which no other socket could take in between.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, name: str = "") -> None:
        self.upstream_host, self.upstream_port, self.name = upstream_host, upstream_port, name
        self.host = "127.0.0.1"
        self._listener = _bind_reserved(self.host)
        self._listener.listen(BACKLOG)  # the port is ours from here on; connects queue until start()
        self.port: int = self._listener.getsockname()[1]
        self._family: int = socket.AF_INET
        self._addr: tuple[object, ...] = ()
        self._lock = threading.Lock()
        self._commands: list[tuple[Callable[[], object], Future[object]]] = []
        self._thread: threading.Thread | None = None
        self._closed = self._stopped = False
        self._failure: BaseException | None = None
        # owned by the proxy thread once started
        self._conns: list[_Conn] = []
        self._partitioned = self._down = False
        self._delay = 0.0
        self._sel: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    def __repr__(self) -> str:
        return f"LinkProxy({self.name or '-'} {self.host}:{self.port} -> {self.upstream_host}:{self.upstream_port})"

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> "LinkProxy":
        with self._lock:
            if self._closed:
                raise HarnessError(f"{self!r} is closed; make a new one.")
            if self._thread is not None:
                return self
            info = socket.getaddrinfo(self.upstream_host, self.upstream_port, type=socket.SOCK_STREAM)[0]
            self._family, self._addr = info[0], info[4]
            self._sel = selectors.DefaultSelector()
            self._wake_r, self._wake_w = socket.socketpair()
            for sock in (self._wake_r, self._wake_w, self._listener):
                sock.setblocking(False)
            self._sel.register(self._wake_r, _READ, _WAKE)
            self._sel.register(self._listener, _READ, _LISTEN)
            self._thread = threading.Thread(target=self._run, name=f"netproxy-{self.name or self.port}",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Reset every connection and stop the thread (joined); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed, thread = True, self._thread
        if thread is None:
            self._listener.close()
            return
        self._wake()
        thread.join(timeout=ANSWER_TIMEOUT)
        if thread.is_alive():
            raise HarnessError(f"{self!r}: its thread did not stop within {ANSWER_TIMEOUT}s.")

    def __enter__(self) -> "LinkProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults (each is in force when the call returns) ---------------------------------------------
    def delay(self, ms: float) -> None:
        """Forward each chunk read from now on at least ``ms`` after it was read (0: no delay)."""
        if ms < 0:
            raise ValueError(f"delay must be >= 0 ms, not {ms}")
        self._call(lambda: setattr(self, "_delay", ms / 1000.0))

    def partition(self) -> None:
        """Hold all traffic both ways (buffered); new connections wait for heal() to reach upstream."""
        self._call(lambda: setattr(self, "_partitioned", True))

    def heal(self) -> None:
        """End a partition: held bytes are forwarded in order, held connects go ahead."""
        self._call(self._heal)

    def cut(self) -> None:
        """Reset every current connection (the client sees RST; upstream is closed); new ones work."""
        self._call(self._cut)

    def down(self) -> None:
        """cut(), and refuse new connections until up()."""
        self._call(self._go_down)

    def up(self) -> None:
        self._call(self._go_up)

    def reset(self) -> None:
        """Back to normal between schedules: existing connections cut (nothing held is forwarded),
        no partition, no delay, up."""
        def run() -> None:
            self._cut()
            self._partitioned, self._delay = False, 0.0
            self._go_up()
        self._call(run)

    # -- state -------------------------------------------------------------------------------------
    @property
    def stalled(self) -> bool:
        """A partition holds a byte or a connect back: some client is waiting on this link."""
        return self._peek(lambda: self._partitioned and any(
            c.upstream is None or c.out.size or c.back.size for c in self._conns), False)

    @property
    def delay_ms(self) -> float:
        """The delay set by delay() (0: none)."""
        return self._delay * 1000.0

    @property
    def connections(self) -> int:
        return self._peek(lambda: len(self._conns), 0)

    @property
    def state(self) -> str:
        """"ok" | "partitioned" | "down" (down wins; a delay is orthogonal)."""
        return "down" if self._down else "partitioned" if self._partitioned else "ok"

    # -- calling into the proxy thread ---------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        future: Future[object] = Future()
        with self._lock:
            if self._thread is None or self._stopped:
                raise HarnessError(f"{self!r} is not running (start() it; a closed proxy cannot be used)"
                                   + (f"; its thread failed: {self._failure!r}" if self._failure else ""))
            self._commands.append((fn, future))
        self._wake()
        try:
            return future.result(timeout=ANSWER_TIMEOUT)  # type: ignore[return-value]
        except FutureTimeout:
            raise HarnessError(f"{self!r}: its thread did not answer within {ANSWER_TIMEOUT}s.") from None

    def _peek(self, fn: Callable[[], T], idle: T) -> T:
        try:
            return self._call(fn)
        except HarnessError:  # not started, or closed: nothing is open or held
            return idle

    def _wake(self) -> None:
        try:
            if self._wake_w is not None:
                self._wake_w.send(b"\0")
        except OSError:  # buffer full (a wake is pending anyway) or already closed
            pass

    # -- the proxy thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        assert self._sel is not None
        try:
            timeout = IDLE_WAKE
            while not self._closed:
                events = self._sel.select(timeout)
                for key, mask in events:
                    if key.data is _WAKE:
                        _drain(key.fileobj)  # type: ignore[arg-type]
                    elif key.data is _LISTEN:
                        self._accept()
                    elif not key.data.closed:
                        self._on_event(key.data, key.fileobj, mask)  # type: ignore[arg-type]
                with self._lock:
                    commands, self._commands = self._commands, []
                done: list[tuple[Future[object], object, BaseException | None]] = []
                for fn, future in commands:
                    try:
                        done.append((future, fn(), None))
                    except Exception as exc:  # noqa: BLE001 - handed back to the caller
                        done.append((future, None, exc))
                timeout = self._pump_all()
                for future, result, error in done:
                    if error is None:
                        future.set_result(result)
                    else:
                        future.set_exception(error)
        except BaseException as exc:  # noqa: BLE001 - reported to every later caller
            self._failure = exc
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            self._stopped, commands, self._commands = True, self._commands, []
        for _, future in commands:
            future.set_exception(HarnessError(f"{self!r} was closed"))
        for conn in list(self._conns):
            self._drop(conn)
        assert self._sel is not None and self._wake_r is not None and self._wake_w is not None
        self._sel.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _accept(self) -> None:
        """Take every connection the kernel has completed (bounded per call)."""
        for _ in range(BACKLOG):
            try:
                client, _ = self._listener.accept()
            except OSError:  # nothing waiting (EAGAIN), or a client gone before it was taken
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client)
            self._conns.append(conn)
            if not self._partitioned:
                self._connect(conn)

    def _connect(self, conn: _Conn) -> None:
        up = socket.socket(self._family, socket.SOCK_STREAM)
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.upstream = up
        err = up.connect_ex(self._addr)
        if err == 0:
            conn.connected = True
        elif err != errno.EINPROGRESS:
            self._drop(conn)

    def _on_event(self, conn: _Conn, sock: socket.socket, mask: int) -> None:
        if sock is conn.client:
            if mask & _WRITE:
                conn.back.blocked = False
            if mask & _READ:
                self._read(conn, sock, conn.out)
        elif not conn.connected:  # the upstream connect finished, one way or the other
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._drop(conn)  # upstream refused: the client sees a reset
            else:
                conn.connected = True
        else:
            if mask & _WRITE:
                conn.out.blocked = False
            if mask & _READ:
                self._read(conn, sock, conn.back)

    def _read(self, conn: _Conn, src: socket.socket, flow: _Flow) -> None:
        try:
            data = src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by one side: reset the other
            self._drop(conn)
            return
        if not data:
            flow.eof = True
        else:
            flow.chunks.append((time.monotonic() + self._delay, data))
            flow.size += len(data)

    def _pump_all(self) -> float:
        """Forward what is due on every connection; the select timeout until the next chunk is due."""
        now, next_due = time.monotonic(), None
        for conn in list(self._conns):
            if not self._partitioned and not conn.closed:
                self._pump(conn, now)
            if conn.closed:
                continue
            self._watch(conn)
            for flow in (conn.out, conn.back) if conn.connected and not self._partitioned else ():
                if flow.chunks and not flow.blocked:
                    due = flow.chunks[0][0]
                    next_due = due if next_due is None else min(next_due, due)
        return IDLE_WAKE if next_due is None else min(IDLE_WAKE, max(0.0, next_due - now))

    def _pump(self, conn: _Conn, now: float) -> None:
        if not conn.connected:
            return
        for flow, dst in ((conn.out, conn.upstream), (conn.back, conn.client)):
            assert dst is not None
            while flow.chunks and not flow.blocked and flow.chunks[0][0] <= now:
                due, data = flow.chunks[0]
                try:
                    sent = dst.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._drop(conn)
                    return
                flow.size -= sent
                if sent < len(data):
                    flow.chunks[0] = (due, data[sent:])
                    flow.blocked = True
                else:
                    flow.chunks.popleft()
            if flow.eof and not flow.chunks and not flow.shut:
                flow.shut = True
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        if conn.out.shut and conn.back.shut:
            self._drop(conn, reset=False)

    def _watch(self, conn: _Conn) -> None:
        """Register each socket of ``conn`` for what the proxy waits for on it now."""
        assert self._sel is not None
        wanted = {conn.client: _interest(conn.out, conn.back)}
        if conn.upstream is not None:  # while connecting: writable when the connect is done
            wanted[conn.upstream] = _interest(conn.back, conn.out) if conn.connected else _WRITE
        for sock, mask in wanted.items():
            old = conn.masks.get(sock, 0)
            if mask == old:
                continue
            if not old:
                self._sel.register(sock, mask, conn)
            elif not mask:
                self._sel.unregister(sock)
            else:
                self._sel.modify(sock, mask, conn)
            conn.masks[sock] = mask

    def _drop(self, conn: _Conn, *, reset: bool = True) -> None:
        """Close a connection: with RST on the client side unless it ended normally."""
        if conn.closed:
            return
        conn.closed = True
        self._conns.remove(conn)
        assert self._sel is not None
        for sock, mask in conn.masks.items():
            if mask:
                self._sel.unregister(sock)
        if reset:
            try:
                conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
            except OSError:
                pass
        conn.client.close()
        if conn.upstream is not None:
            conn.upstream.close()

    def _cut(self) -> None:
        if not self._down:
            self._accept()  # a connect the kernel already completed is an existing connection too
        for conn in list(self._conns):
            self._drop(conn)

    def _heal(self) -> None:
        self._partitioned = False
        for conn in list(self._conns):
            if conn.upstream is None:
                self._connect(conn)

    def _go_down(self) -> None:
        self._cut()
        if not self._down:
            assert self._sel is not None
            self._sel.unregister(self._listener)  # a stopped listener polls as HUP forever
            self._listener.shutdown(socket.SHUT_RD)  # stops listening (backlog reset), keeps the port
            self._down = True

    def _go_up(self) -> None:
        if self._down:
            assert self._sel is not None
            self._listener.listen(BACKLOG)
            self._sel.register(self._listener, _READ, _LISTEN)
            self._down = False
