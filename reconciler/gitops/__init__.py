"""The pull-request writer: one GitOps batch, where values live in the repository (index),
the edits (render), commits and pushes (writer), reverts, and following pull requests."""
