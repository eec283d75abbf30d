"""Which seeds RoboTwin's eval tries: candidate seeds ``seed_stride * (1 + base_seed) + k``, and,
without a seed list, the scan that makes episode k the k-th candidate its expert can solve."""

from __future__ import annotations

SEED_STRIDE = 100000  # eval_policy.py: st_seed = 100000 * (1 + seed); also that of seed lists without one
SCAN_RULE = "kth_solvable"  # spec.extra["seed_rule"] without a seed list


def candidate_seed(index: int, base_seed: int = 0, seed_stride: int = SEED_STRIDE) -> int:
    """The ``index``-th seed RoboTwin's eval would try (before expert skipping):
    ``seed_stride * (1 + base_seed) + index`` (the protocol sets the stride)."""
    return seed_stride * (1 + base_seed) + index


class SeedScan:
    """Without a seed list: the candidates of one task and split judged so far by RoboTwin's expert
    check, so that episode k is the k-th solvable candidate, as eval_policy.py's loop makes it."""

    def __init__(self, start: int):
        self.start = start
        self.next = start
        self.solvable: list[tuple[int, dict]] = []  # (seed, play_once() info)
        self.skipped: list[tuple[int, str]] = []  # (seed, reason)

    def skipped_before(self, seed: int) -> tuple[int, dict[str, int]]:
        reasons: dict[str, int] = {}
        for s, reason in self.skipped:
            if s < seed:
                reasons[reason] = reasons.get(reason, 0) + 1
        return sum(reasons.values()), reasons
