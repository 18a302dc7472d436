"""Console capture: what the training process writes to stdout and stderr, at the file-descriptor level, so
that prints, C extensions and child processes are all seen, while the terminal gets every byte as before.

Each of fds 1 and 2 is pointed at a pipe (a pseudo-terminal where it was a terminal, so that programs asking
``isatty()`` see what they saw, and colours and progress bars stay as they were); one thread reads both, writes
each chunk to the original descriptor at once, unchanged, and hands it on with its wall time. At stop the
descriptors are pointed back. A child process still holding the pipe after stop (one that outlives the run)
keeps being forwarded to the terminal until it exits, no longer captured.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import selectors
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable

__all__ = ["ConsoleTee"]

_logger = logging.getLogger("tracelet_otel.capture")

STREAMS = (1, 2)
READ_BYTES = 65536
STOP_DRAIN_S = 1.0  # how long stop waits for what is still in the pipes


class ConsoleTee:
    """Tees fds 1 and 2 to ``on_output(fd, wall_time, data)``; the terminal keeps getting every byte."""

    def __init__(self, on_output: Callable[[int, float, bytes], None]) -> None:
        self._on_output = on_output
        self._capturing = True
        self._originals: dict[int, int] = {}  # fd -> a duplicate of what it was
        self._reads: dict[int, int] = {}  # read end -> fd
        self._selector = selectors.DefaultSelector()
        for fd in STREAMS:
            try:
                self._tee(fd)
            except OSError as error:  # a closed or odd descriptor: that stream is not captured
                _logger.debug("tracelet-otel: fd %d is not captured: %s", fd, error)
        self._thread = threading.Thread(target=self._run, name="tracelet-otel-console", daemon=True)
        self._thread.start()

    def _tee(self, fd: int) -> None:
        original = os.dup(fd)
        if os.isatty(fd):
            read, write = os.openpty()
            tty.setraw(write)  # no output processing: the bytes reach the terminal as they were written
            with contextlib.suppress(OSError):  # the terminal's size, for programs that draw to its width
                fcntl.ioctl(write, termios.TIOCSWINSZ, fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        else:
            read, write = os.pipe()
        _flush_python_streams()
        os.dup2(write, fd)
        os.close(write)
        self._originals[fd] = original
        self._reads[read] = fd
        self._selector.register(read, selectors.EVENT_READ)

    def _run(self) -> None:
        while self._reads:
            for key, _ in self._selector.select():
                read = key.fd
                try:
                    data = os.read(read, READ_BYTES)
                except OSError:  # a pseudo-terminal whose other end is closed: its end of file
                    data = b""
                fd = self._reads[read]
                if not data:
                    self._selector.unregister(read)
                    os.close(read)
                    del self._reads[read]
                    continue
                _write_all(self._originals[fd], data)
                if self._capturing:
                    try:
                        self._on_output(fd, time.time(), data)
                    except Exception:  # the terminal must keep getting its output whatever happens here
                        self._capturing = False
                        _logger.exception("tracelet-otel: console capture stopped")
        for original in self._originals.values():
            os.close(original)

    def stop(self) -> None:
        """Point fds 1 and 2 back at what they were, after forwarding and capturing what is in the pipes."""
        _flush_python_streams()
        for fd, original in self._originals.items():
            os.dup2(original, fd)
        self._thread.join(STOP_DRAIN_S)  # ends at once unless a child process holds a pipe
        self._capturing = False


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue
        except OSError:  # the terminal is gone (a closed pipe): as without us, the output is lost
            return
