"""Graph builders and per-round schedules."""
