"""Process and file-system helpers: safe reads and writes, numeric bounds, signals, child lifelines, the diagnosed
interpreter, the usage error."""
