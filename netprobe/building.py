"""Building a user's model (importing its file, calling its factory) under a time limit, with a status line.

A factory that never returns would hang a command silently. The CLI sets a limit (`--build-timeout`,
default netprobe.defaults.BUILD_TIMEOUT_S); while a user's code runs, a terminal shows what is being built on
stderr, and past the limit the build ends with `BuildTimeout` (one line, exit code 2). On a POSIX main
thread the limit is a real-time timer (SIGALRM), which also interrupts a blocking call; on another
platform's main thread a watchdog thread interrupts the main thread once it runs Python again. Off the
main thread no signal can reach the build: it runs without a limit. The Python API sets none.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from netprobe.defaults import MAX_BUILD_TIMEOUT_S
from netprobe.errors import InputError

_limit_s: float | None = None  # None: no limit
_active = False  # a build under way: a nested one (a factory importing a file) shares its limit


class BuildTimeout(InputError):
    """A user's model took longer to build than the limit."""


class _Expired(BaseException):
    """Raised into the user's code at the deadline. A BaseException, as KeyboardInterrupt is, so that no
    `except Exception` on its way out (the user's own, or netprobe's wrappers that turn a user's error into
    one line) takes it; `building` turns it into BuildTimeout where the limit was set."""


def set_build_timeout(seconds: float | None) -> None:
    """The limit on building a user's model from now on: seconds, or None (or 0) for none."""
    global _limit_s
    if seconds is not None and not 0 <= seconds <= MAX_BUILD_TIMEOUT_S:  # NaN too
        raise InputError(f"--build-timeout {seconds:g} is not allowed; give seconds from 0 (no limit) to "
                         f"{MAX_BUILD_TIMEOUT_S:,.0f}")
    _limit_s = seconds if seconds else None


@contextlib.contextmanager
def building(what: str) -> Iterator[None]:
    """Run a user's build: a status line on a terminal, and BuildTimeout past the limit."""
    global _active
    if _active:
        yield
        return
    _active = True
    shown = _show_status(what)
    try:
        with _deadline(_limit_s, what):
            yield
    finally:
        _active = False
        if shown:
            _clear_status()


def _show_status(what: str) -> bool:
    stream = sys.stderr
    try:
        if stream is None or not stream.isatty():
            return False
        stream.write(f"building {what} …")
        stream.flush()
    except (OSError, ValueError):
        return False
    return True


def _clear_status() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def _message(what: str, seconds: float) -> str:
    return (f"building {what} took longer than {seconds:g} s (--build-timeout) and was stopped; check that your "
            "code returns, or give a longer --build-timeout (0: no limit)")


@contextlib.contextmanager
def _deadline(seconds: float | None, what: str) -> Iterator[None]:
    main = threading.current_thread() is threading.main_thread()
    if not seconds or not main:
        yield
        return
    if hasattr(signal, "setitimer") and hasattr(signal, "SIGALRM"):
        def on_alarm(signum: int, frame: object) -> None:
            raise _Expired

        previous = signal.signal(signal.SIGALRM, on_alarm)
        try:  # the timer starts inside: a limit of 1e-9 s fires before setitimer even returns
            signal.setitimer(signal.ITIMER_REAL, seconds)
            yield
        except _Expired:
            raise BuildTimeout(_message(what, seconds)) from None
        finally:
            _cancel_timer()
            signal.signal(signal.SIGALRM, previous)
        return
    fired = threading.Event()
    done = threading.Event()

    def watch() -> None:
        if not done.wait(seconds):
            fired.set()
            _thread.interrupt_main()

    watcher = threading.Thread(target=watch, name="netprobe-build-timeout", daemon=True)
    watcher.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired.is_set():
            raise BuildTimeout(_message(what, seconds)) from None
        raise
    finally:
        done.set()


def _cancel_timer() -> None:
    """Stop the timer; an alarm that fires while it is being stopped finds the build already over."""
    while True:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        except _Expired:
            continue
