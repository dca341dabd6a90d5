"""Login throttling: after too many failures for one username within a window, refuse for a while.

In memory and per process: enough to make password guessing against one coordinator slow; a fleet
of coordinators would keep this in Redis (issue 7's scale-out).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class LoginThrottle:
    def __init__(
        self, *, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_failures
        self._window = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = self._clock()
        failures = self._failures.setdefault(key, deque())
        while failures and now - failures[0] > self._window:
            failures.popleft()
        return failures

    def retry_after(self, key: str) -> float | None:
        """Seconds until a login may be tried again, or None when it may be tried now."""
        failures = self._recent(key)
        if len(failures) < self._max:
            if not failures:
                self._failures.pop(key, None)
            return None
        return max(0.0, self._window - (self._clock() - failures[0]))

    def failed(self, key: str) -> None:
        self._recent(key).append(self._clock())
        if len(self._failures) > 100_000:
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
