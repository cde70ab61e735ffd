"""The ``reconciler`` command: argument parsing and output only."""
