"""Valid traffic interleaved with hostile shapes, from one seeded ``random.Random``."""

from __future__ import annotations

import random
from dataclasses import replace

from netscope.tools.hostile.model import (
    KINDS,
    Hostile,
    HostileConfig,
    accepted,
    base,
    kinds,
    make,
)


class HostileStream:
    """Valid traffic interleaved with hostile shapes, reproducible from ``rand``.

    ``hostile_share`` of the messages are drawn from :func:`kinds` (by weight: the huge
    ones rarely, but each kind once among the first hostile draws, so a short run still
    meets them all); the rest are plain valid requests (kind ``valid``) on a small set of
    Kafka keys, so per-key ordering interleaves them with the hostile ones.
    """

    def __init__(self, cfg: HostileConfig, rand: random.Random, hostile_share: float) -> None:
        if not 0.0 <= hostile_share <= 1.0:
            raise ValueError(f"hostile_share must be in [0, 1], got {hostile_share!r}")
        self.cfg = cfg
        self.rand = rand
        self.hostile_share = hostile_share
        self._kinds = kinds(cfg)
        self._weights = [KINDS[k].weight for k in self._kinds]
        self._first = rand.sample(self._kinds, len(self._kinds))  # each kind once, first

    def next(self) -> Hostile:
        rand = self.rand
        if rand.random() < self.hostile_share:
            kind = self._first.pop() if self._first else rand.choices(self._kinds, self._weights)[0]
            hostile = make(kind, rand, self.cfg)
            if hostile.key == b"hostile":  # the default: spread over the valid keys
                hostile = replace(hostile, key=self._key())
            return hostile
        msg = base(rand, self.cfg, rand.choice(("GET", "GET", "POST", "PUT", "DELETE")))
        return replace(accepted("valid", msg), key=self._key())

    def _key(self) -> bytes:
        return b"cust-%03d" % self.rand.randrange(256)


def new_seed() -> int:
    """A seed for a run that did not ask for one (printed, so the run can be replayed)."""
    return random.SystemRandom().randrange(1 << 32)
