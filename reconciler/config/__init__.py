"""Settings, grouped by the system they configure, and the one reader of the environment."""
