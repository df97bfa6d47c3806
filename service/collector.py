"""How often Python's cycle collector runs in the long-lived serving processes.

By default it runs every 700 allocations net and rescans the older objects as they grow.
A socket process keeps a few dozen objects alive per open connection for hours, so in a
reconnect storm a quarter of its CPU went to collections that found nothing (1.8 of 6.6
CPU-seconds for 5,000 connects); an http worker allocates a few hundred objects per
publish and frees nearly all of them by reference counting, yet paid ~6% of its CPU per
publish in collections (hack/publish_cost.py, 64 clients: 181 -> 169.5 µs).

Objects alive once the process has started (Django, the modules, the application) are
frozen out of the scans, and young collections run after 20,000 allocations; reference
cycles are rare here and still collected.
"""

import gc

THRESHOLDS = (20_000, 20, 10)


def collect_less():
    """Call once the process has loaded what it serves with."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
