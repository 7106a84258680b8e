"""Short isolated training runs: spec -> child process -> one JSON result -> verdicts."""
