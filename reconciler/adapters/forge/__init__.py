"""Pull requests on GitHub, GitLab, Gitea, or a local record."""
