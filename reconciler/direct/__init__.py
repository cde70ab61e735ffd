"""Changes through the Kubernetes API: guarded patches, drains, rollback."""
