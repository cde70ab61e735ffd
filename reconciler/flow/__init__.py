"""The stages both writers share: intake, cluster facts, decide, status writes."""
