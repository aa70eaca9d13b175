"""One ``dpnb run`` per bucket at a time: an ``fcntl.flock`` on ``reports/<bucket>/.lock``.

The kernel drops the lock when the holder exits, even after ``kill -9``, so a stale lock
file never blocks the next run. The file holds the holder's pid for the error message.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..errors import LockError

__all__ = ["BucketLock"]


class BucketLock:
    """Context manager: wait up to ``timeout_s`` for the lock, then raise :class:`LockError`."""

    def __init__(self, bucket_dir: str | os.PathLike, timeout_s: float = 60.0, poll_s: float = 0.2):
        self.path = Path(bucket_dir) / ".lock"
        self.timeout_s = float(timeout_s)
        self.poll_s = poll_s
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    msg = (
                        f"{self.path}: bucket is locked by another `dpnb run` ({holder}); waited {self.timeout_s:g} s. "
                        "Wait for it to finish (or use --lock-timeout)."
                    )
                    raise LockError(msg) from None
                time.sleep(self.poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "BucketLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
