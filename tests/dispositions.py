"""Tests that send signals set their children's signal dispositions themselves. A suite started under `nohup` or
as a background job of a non-interactive shell inherits SIGHUP or SIGINT ignored; fp8doctor keeps an ignored
SIGHUP ignored on purpose (nohup is respected), so a child started as inherited would not react to the signal the
test sends. `preexec_fn=default_signals` (or a call after fork) gives the child the defaults a terminal gives."""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT)


def default_signals() -> None:
    """In a forked child before exec: every signal a test sends back to its default action."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
