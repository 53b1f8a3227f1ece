"""Caps on what one token may hold at once: expensive reads and open event streams.

An integrity check of a mine or a long readings query holds a pooled connection for
seconds; without a cap ten parallel requests by one viewer take the whole pool and every
other user waits. Each kind of work has a cap per token and one for the process; past
either the request is refused at once with 429 and ``Retry-After`` rather than queued, so
a client that floods only slows itself. One event loop runs the API, so plain counters
suffice (no locks).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request

from api.auth import PrincipalDep
from api.errors import TooManyRequests


class Caps:
    """At most ``per_token`` slots per token and ``total`` in all for one kind of work."""

    def __init__(
        self,
        what: str,
        *,
        per_token: int,
        total: int,
        retry_after_s: int,
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self.what = what
        self.per_token = per_token
        self.total = total
        self.retry_after_s = retry_after_s
        self.on_refusal = on_refusal
        self._held: Counter[int] = Counter()
        self._total = 0

    @property
    def in_use(self) -> int:
        return self._total

    def held_by(self, token_id: int) -> int:
        return self._held[token_id]

    def acquire(self, token_id: int) -> Callable[[], None]:
        """Take a slot or raise TooManyRequests; returns the function that gives it back (once)."""
        if self._held[token_id] >= self.per_token:
            self._refuse("per_token")
            raise TooManyRequests(
                f"this token already has {self._held[token_id]} {self.what} running, the most it may have at once; "
                f"wait for one to finish (retry after {self.retry_after_s} s)",
                retry_after_s=self.retry_after_s,
            )
        if self._total >= self.total:
            self._refuse("total")
            raise TooManyRequests(
                f"the server is running {self._total} {self.what}, the most it runs at once; "
                f"retry after {self.retry_after_s} s",
                retry_after_s=self.retry_after_s,
            )
        self._held[token_id] += 1
        self._total += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._total -= 1
            self._held[token_id] -= 1
            if self._held[token_id] <= 0:
                del self._held[token_id]

        return release

    @contextlib.contextmanager
    def hold(self, token_id: int) -> Iterator[None]:
        release = self.acquire(token_id)
        try:
            yield
        finally:
            release()

    def _refuse(self, which: str) -> None:
        if self.on_refusal is not None:
            self.on_refusal(which)


async def _expensive_read(request: Request, who: PrincipalDep) -> AsyncIterator[None]:
    caps: Caps = request.app.state.expensive_caps
    with caps.hold(who.token_id):
        yield


#: Holds one of the token's expensive-read slots for the rest of the request (429 when none is free).
ExpensiveRead = Annotated[None, Depends(_expensive_read)]
