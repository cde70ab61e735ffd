"""The pull-request writer: one GitOps batch, the repository's layout, the writer, reverts."""
