"""A fake GitHub / GitLab / Gitea REST server for the forge adapter's integration tests."""

from tests.fakes.forgeserver.server import GITEA, GITHUB, GITLAB, ForgeServer, Seen

__all__ = ["GITEA", "GITHUB", "GITLAB", "ForgeServer", "Seen"]
