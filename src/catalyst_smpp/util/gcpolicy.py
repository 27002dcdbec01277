"""The garbage collector's settings for a running gateway.

CPython's cyclic collector, at its defaults (threshold 700, 10, 10), cost the gateway about a fifth of its
CPU per message: every ~13 messages a young collection, every ~1,600 a full one that walks every object
the process holds (configuration, routes, imported modules: ~70,000 objects, 20-50 ms each, a pause in the
middle of the traffic).  Almost nothing the hot paths allocate is cyclic garbage (records, PDUs, rows are
freed by reference counting the moment they are done), so collecting that often buys nothing.

:func:`settle` runs once the gateway is up:

* ``gc.freeze()`` after one full collection: what start-up built is moved to the permanent generation,
  which no later collection walks (it lives as long as the process anyway);
* a young-generation threshold of 25,000 allocations instead of 700, so a young collection runs every
  ~1,000 messages and finds the few cycles (trio's cancelled scopes, exceptions with tracebacks) together.

Measured with ``bench/e2e.py --count 10000`` (collector time from ``gc.callbacks``, per 10,000 messages,
on this project's two-core test machine): defaults 0.56 s (772 young, 70 middle, 6 full collections);
threshold 25,000 with the freeze 0.12 s (8 young of ~7 ms, 1 full); threshold 10,000 with the freeze 0.19 s.
So about 40 us of CPU less per message, and no full collection of the start-up heap during traffic.
Objects created later that live long (caches) are still collected as usual, only less often; memory between
young collections grows by at most the threshold's worth of young objects.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["YOUNG_THRESHOLD", "settle"]

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 25_000
"""Allocations (less deallocations) of container objects between young collections."""


def settle() -> None:
    """Collect once, freeze what start-up left, and collect the young generation less often (module notes)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    log.debug("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
