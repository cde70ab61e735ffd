"""Pure tests: no I/O, no servers."""
