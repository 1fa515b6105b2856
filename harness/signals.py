"""Clean exits: SIGTERM handled like Ctrl-C, and processes that die with the process that started them.

SIGTERM is what ``timeout``, ``docker stop`` and CI cancellation send.  Its default action ends the
process at once, skipping every ``finally``: servers die anyway (PR_SET_PDEATHSIG) but their temp
dirs stay until the next run's sweep.  Raising :class:`Terminated` (a KeyboardInterrupt) in the main
thread instead runs the same cleanup as Ctrl-C; the CLI then exits 143 (128 + SIGTERM).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from types import FrameType
from typing import Callable

#: exit status after SIGTERM, as a shell reports a process killed by it
EXIT_SIGTERM = 128 + signal.SIGTERM
_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind like Ctrl-C so servers stop and temp dirs go."""


_received = threading.Event()


#: set by :func:`die_with_parent`: the parent's pid and what to clean up when it is gone
_orphan: tuple[int, Callable[[], None]] | None = None
#: how long an orphan's cleanup may take before it exits anyway
ORPHAN_CLEANUP_S = 10.0


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _received.set()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    if _orphan is not None and os.getppid() != _orphan[0]:
        # the parent died (PR_SET_PDEATHSIG): nobody waits for our results, so clean up and go now,
        # from a thread, rather than unwinding whatever the main thread is in the middle of
        threading.Thread(target=_exit_after, args=(_orphan[1],), daemon=True, name="harness-orphan-exit").start()
        return
    raise Terminated()


def _exit_after(cleanup: Callable[[], None]) -> None:
    worker = threading.Thread(target=cleanup, daemon=True, name="harness-orphan-cleanup")
    worker.start()
    worker.join(ORPHAN_CLEANUP_S)
    os._exit(EXIT_SIGTERM)


def handle_sigterm() -> bool:
    """Turn SIGTERM into :class:`Terminated` in the main thread; False if not possible or someone
    else (the application under test, another plugin) installed a handler already."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current not in (signal.SIG_DFL, None) and current is not _on_sigterm:
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def terminated() -> bool:
    """Whether SIGTERM arrived in this process (after :func:`handle_sigterm`)."""
    return _received.is_set()


def die_with_parent(parent: int, cleanup: Callable[[], None]) -> bool:
    """End this process soon after ``parent`` (the thread that forked it) dies, even by SIGKILL.

    The kernel sends SIGTERM (PR_SET_PDEATHSIG); with :func:`handle_sigterm`'s handler installed,
    ``cleanup`` then runs in a thread (for at most ``ORPHAN_CLEANUP_S``) and the process exits 143.
    Without that handler the signal is SIGKILL.  Linux only; elsewhere returns False.
    """
    global _orphan
    if not sys.platform.startswith("linux"):
        return False
    ours = signal.getsignal(signal.SIGTERM) is _on_sigterm
    _orphan = (parent, cleanup)
    libc = ctypes.CDLL(None, use_errno=True)
    sig = signal.SIGTERM if ours else signal.SIGKILL
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig)) != 0:
        return False
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), sig)
    return True
