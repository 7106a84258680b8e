"""The releases the static TE lab reads: one per minor (its newest patch), from the reference report's TE 1.11 on.

A release listed here without a wheel on the index is recorded as such (TE 2.0.0 was never published there).
"""

from __future__ import annotations

TE_RELEASES: tuple[str, ...] = (
    "1.11.0", "1.12.0", "1.13.0", "2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.0", "2.6.0.post1", "2.7.0",
    "2.8.0", "2.9.0", "2.10.0", "2.11.0", "2.12.0", "2.13.0", "2.14.1", "2.15.0", "2.16.1", "2.17.1", "2.18.0",
    "2.19.0", "2.20.2",
)
ACCELERATE_RELEASES: tuple[str, ...] = (
    "1.1.1", "1.2.1", "1.3.0", "1.4.0", "1.5.2", "1.6.0", "1.7.0", "1.8.1", "1.9.0", "1.10.1", "1.11.0", "1.12.0",
    "1.13.0", "1.14.0", "1.15.0",
)
