"""What every trainer shares: the run folder and its lock, checkpoints, metrics, the launcher."""
