"""Options several commands share: one name, one meaning, one help text."""

from __future__ import annotations

RUN_TIMEOUT_HELP = "seconds one training run may take before it counts as hung (a result, not an error)"
COMMAND_TIMEOUT_HELP = "seconds the watched command may run before its whole process group is stopped (exit 124)"
