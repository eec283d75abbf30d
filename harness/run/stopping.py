"""An early stop the runners honour: the order episodes start in, and when to start no more.

The adaptive regression gate (``harness.gate.adaptive``) is one; the runners know only this
protocol, so the run layer imports nothing of the gate."""

from __future__ import annotations

from typing import Protocol

from harness.records import EpisodeRecord
from harness.specs import EpisodeSpec


class EarlyStop(Protocol):
    def resume(self, records: list[EpisodeRecord]) -> None:
        """Take the records an earlier invocation left (before anything runs)."""

    @property
    def decided(self) -> bool:
        """Nothing more is to run (e.g. a resumed run whose verdict was already reached)."""

    def order(self, todo: list[tuple[EpisodeSpec, int]]) -> list[tuple[EpisodeSpec, int]]:
        """The pending episodes in the order they must start."""

    def observe(self, record: EpisodeRecord) -> bool:
        """Take one finished episode (after it is written); True: start no more episodes.
        Episodes already running finish and are recorded."""
