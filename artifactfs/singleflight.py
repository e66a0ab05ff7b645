"""One run of an async job per key; concurrent callers of the same key share it.

Used for block fetches, directory listings and index builds: N readers of one
missing thing cause one request. Waiters get the owner's result, or a fresh
copy of its domain error; if the owner was cancelled (an interrupted read),
the first waiter runs the job itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

from artifactfs.errors import ArtifactFSError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Flight(Generic[V]):
    __slots__ = ("done", "error", "finished", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.finished = False
        self.result: V | None = None
        self.error: ArtifactFSError | None = None


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._flights

    async def run(self, key: K, job: Callable[[], Awaitable[V]]) -> V:
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.error is not None:
                raise type(flight.error)(str(flight.error))
            if flight.finished:
                return flight.result  # type: ignore[return-value]
            # the owner was cancelled: take the job over
        flight = _Flight[V]()
        self._flights[key] = flight
        try:
            flight.result = await job()
            flight.finished = True
            return flight.result
        except ArtifactFSError as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()
