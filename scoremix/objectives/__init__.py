"""Training objectives as pure functions of network outputs (no files, logging or DDP)."""
