"""The GitHub, GitLab and Gitea adapters against the fake forge server (real HTTP, loopback).

Cases, each run for all three forges unless named:
- create: a new pull request with title, body, base, labels; its number, URL and state;
- reuse: a second open_or_update for the same branch updates the open one (one PR in the
  forge, the 409/422 "already exists" answer taken as reuse); a pull request opened by
  someone else is reused the same way; an unchanged rerun sends no update;
- find_open: finds the open one, not a closed one, not another branch's;
- lifecycle through follow(): open -> Applying, merged -> Applied at the merge time
  (normalised to UTC ``Z`` from each forge's own format), closed -> Rejected;
- comment reaches the pull request;
- 401 with a wrong and with a missing token: PermanentError saying authentication failed,
  the token in no message, no log line and no repr;
- 404 for an unknown pull request number and an unknown repository: NotFoundError;
- 5xx retried then success; 5xx forever -> TemporaryError after exactly ``retries`` tries;
  429 with Retry-After waits at least that long; a read timeout is retried; a refused
  connection is TemporaryError;
- GitHub only: a 403 secondary rate limit (with Retry-After) is retried, not an auth error;
- GitLab only: the project may be a numeric id or a URL-encoded group/name path;
- Gitea only: the open pull request is found on a later page of the list;
- a pull request from the same branch into another base is not reused;
- repo_from_remote (table) and from_settings: the right adapter, unknown kinds refused.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import wiring
from reconciler.adapters.forge import gitea, github, gitlab, local
from reconciler.adapters.forge import port as forge
from reconciler.domain import errors, model
from tests.fakes.forgeserver import GITEA, GITHUB, GITLAB, ForgeServer

TOKEN = "tok-5ecret-a1b2c3d4e5"
KINDS = (GITHUB, GITLAB, GITEA)
RestForge = github.GitHubForge | gitlab.GitLabForge | gitea.GiteaForge
Make = Callable[..., RestForge]


@pytest.fixture
def server() -> Iterator[ForgeServer]:
    with ForgeServer(token=TOKEN) as s:
        yield s


@pytest.fixture
def make(server: ForgeServer) -> Iterator[Callable[..., RestForge]]:
    made: list[RestForge] = []

    def build(kind: str, *, token: str | None = TOKEN, repo: str = "acme/app",
              url: str | None = None, retries: int = 4, timeout: float = 5.0) -> RestForge:
        base = url or server.url
        f: RestForge
        if kind == GITHUB:
            f = github.GitHubForge(base, repo, token, timeout=timeout, retries=retries,
                                   backoff=0.01)
        elif kind == GITLAB:
            f = gitlab.GitLabForge(base, repo, token, timeout=timeout, retries=retries,
                                   backoff=0.01)
        else:
            f = gitea.GiteaForge(base, repo, token, timeout=timeout, retries=retries,
                                 backoff=0.01)
        made.append(f)
        return f

    yield build
    for f in made:
        f.close()


def _open(f: RestForge, branch: str = "dakr/batch-1", **kw: object) -> forge.PullRequest:
    args: dict[str, object] = {"branch": branch, "base": "main", "title": "dakr: 2 changes",
                               "body": "| w | cpu |\n|---|---|\n| cart | 1 -> 0.5 |\n"}
    args.update(kw)
    return f.open_or_update(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_create(kind: str, server: ForgeServer, make: Make) -> None:
    pr = _open(make(kind), labels=("dakr", "cost"))
    assert (pr.number, pr.branch, pr.base, pr.state) == (1, "dakr/batch-1", "main", "open")
    assert pr.title == "dakr: 2 changes" and pr.merged_at == "" and len(pr.head_sha) == 40
    assert pr.url.startswith(server.url) and pr.url.endswith("/1")
    [stored] = server.pulls(kind)
    body_key = "description" if kind == GITLAB else "body"
    assert stored[body_key].startswith("| w | cpu |")
    labels = stored["labels"] if kind == GITLAB else [x["name"] for x in stored["labels"]]
    assert labels == ["dakr", "cost"]


@pytest.mark.parametrize("kind", KINDS)
def test_second_call_updates_the_open_one(kind: str, server: ForgeServer, make: Make) -> None:
    f = make(kind)
    first = _open(f)
    second = _open(f, title="dakr: 3 changes", body="new body\n", labels=("dakr",))
    assert second.number == first.number and second.title == "dakr: 3 changes"
    [stored] = server.pulls(kind)
    assert stored["title"] == "dakr: 3 changes"
    assert stored["description" if kind == GITLAB else "body"] == "new body\n"
    update = "PUT" if kind == GITLAB else "PATCH"
    assert server.count(update) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_reuses_a_pull_request_opened_elsewhere(kind: str, server: ForgeServer,
                                                make: Make) -> None:
    server.create(kind, "dakr/batch-1")
    server.create(kind, "someone/else")
    pr = _open(make(kind))
    assert pr.number == 1 and pr.title == "dakr: 2 changes"
    assert len(server.pulls(kind)) == 2
    # The create was refused (409/422) before the reuse: exactly one POST of a pull request.
    create_path = "merge_requests" if kind == GITLAB else "/pulls"
    assert server.count("POST", create_path) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_unchanged_rerun_sends_no_update(kind: str, server: ForgeServer, make: Make) -> None:
    f = make(kind)
    _open(f)
    _open(f)
    assert server.count("PATCH") + server.count("PUT") == 0
    assert len(server.pulls(kind)) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_find_open(kind: str, server: ForgeServer, make: Make) -> None:
    f = make(kind)
    assert f.find_open("dakr/batch-1") is None
    pr = _open(f)
    _open(f, branch="dakr/batch-2")
    found = f.find_open("dakr/batch-1")
    assert found is not None and found.number == pr.number and found.branch == "dakr/batch-1"
    server.close(kind, pr.number)
    assert f.find_open("dakr/batch-1") is None
    assert f.find_open("dakr/batch-2") is not None


@pytest.mark.parametrize("kind", KINDS)
def test_follow_through_the_lifecycle(kind: str, server: ForgeServer, make: Make) -> None:
    f = make(kind)
    merged, closed = _open(f), _open(f, branch="dakr/batch-2")
    assert forge.follow(f, merged.number) == (model.APPLYING, "")
    at = dt.datetime(2026, 11, 24, 21, 5, 7, 250000, tzinfo=dt.UTC)
    server.merge(kind, merged.number, at=at)
    server.close(kind, closed.number)
    assert forge.follow(f, merged.number) == (model.APPLIED, "2026-11-24T21:05:07Z")
    assert forge.follow(f, closed.number) == (model.REJECTED, "")
    got = f.get(merged.number)
    assert got.state == "merged" and got.merged_at == "2026-11-24T21:05:07Z"
    assert f.get(closed.number).state == "closed"


@pytest.mark.parametrize("kind", KINDS)
def test_comment(kind: str, server: ForgeServer, make: Make) -> None:
    f = make(kind)
    pr = _open(f)
    f.comment(pr.number, "superseded by a newer recommendation")
    path = f"merge_requests/{pr.number}/notes" if kind == GITLAB else f"issues/{pr.number}/comments"
    assert server.count("POST", path) == 1
    assert server.requests[-1].body == {"body": "superseded by a newer recommendation"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("token", ["wrong-" + TOKEN[::-1], None])
def test_unauthorized_is_permanent_and_never_shows_the_token(
        kind: str, token: str | None, server: ForgeServer, make: Make,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    f = make(kind, token=token)
    with pytest.raises(errors.PermanentError) as info:
        _open(f)
    assert not isinstance(info.value, errors.NotFoundError)
    assert "authentication failed" in str(info.value)
    assert server.count() == 1  # not retried
    secrets = [TOKEN] + ([token] if token else [])
    chain: list[BaseException] = []
    e: BaseException | None = info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for s in secrets:
        assert all(s not in str(x) and s not in repr(x) for x in chain)
        assert s not in caplog.text and s not in repr(f) and s not in repr(vars(f))


@pytest.mark.parametrize("kind", KINDS)
def test_the_right_token_is_sent_as_the_forge_expects(kind: str, server: ForgeServer,
                                                      make: Make) -> None:
    _open(make(kind))
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    if kind == GITLAB:
        assert headers["private-token"] == TOKEN
    elif kind == GITHUB:
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert headers["x-github-api-version"] == "2022-11-28"
        assert headers["accept"] == "application/vnd.github+json"
    else:
        assert headers["authorization"] == f"token {TOKEN}"


@pytest.mark.parametrize("kind", KINDS)
def test_not_found(kind: str, server: ForgeServer, make: Make) -> None:
    with pytest.raises(errors.NotFoundError):
        make(kind).get(99)
    with pytest.raises(errors.NotFoundError):
        _open(make(kind, repo="acme/missing"))
    assert server.count() == 2  # a 404 is not retried


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(kind: str, status: int, server: ForgeServer,
                                   make: Make) -> None:
    server.fail_next(2, status)
    pr = _open(make(kind))
    assert pr.number == 1 and len(server.pulls(kind)) == 1
    assert server.count() == 3


@pytest.mark.parametrize("kind", KINDS)
def test_server_errors_forever_give_up(kind: str, server: ForgeServer, make: Make,
                                       caplog: pytest.LogCaptureFixture) -> None:
    server.fail_next(50, 500)
    with pytest.raises(errors.TemporaryError) as info:
        _open(make(kind, retries=4))
    assert server.count() == 4
    assert "HTTP 500" in str(info.value) and "4 attempts" in str(info.value)
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 3
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_rate_limit_honours_retry_after(kind: str, server: ForgeServer, make: Make) -> None:
    server.fail_next(1, 429, retry_after=0.4)
    start = time.monotonic()
    pr = _open(make(kind))
    assert time.monotonic() - start >= 0.4  # backoff alone would be ~0.01 s
    assert pr.number == 1 and server.count() == 2


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_is_retried(kind: str, server: ForgeServer, make: Make) -> None:
    server.fail_next(1, None, delay=2.0)
    pr = _open(make(kind, timeout=0.3))
    assert pr.number == 1 and len(server.pulls(kind)) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_temporary(kind: str, make: Make) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.TemporaryError) as info:
        _open(make(kind, url=f"http://127.0.0.1:{port}", retries=2))
    assert "gave up after 2 attempts" in str(info.value) and TOKEN not in str(info.value)


def test_github_secondary_rate_limit_is_retried(server: ForgeServer, make: Make) -> None:
    server.fail_next(1, 403, retry_after=0.05)
    assert _open(make(GITHUB)).number == 1
    assert server.count() == 2


@pytest.mark.parametrize("project", ["42", "acme/app"])
def test_gitlab_project_by_id_or_path(project: str, server: ForgeServer, make: Make) -> None:
    pr = _open(make(GITLAB, repo=project))
    assert pr.number == 1
    expected = "/api/v4/projects/42/" if project == "42" else "/api/v4/projects/acme%2Fapp/"
    assert server.requests[0].path.startswith(expected)


def test_gitlab_keeps_reviewer_labels_on_update(server: ForgeServer, make: Make) -> None:
    f = make(GITLAB)
    _open(f, labels=("dakr",))
    server.requests.clear()
    _open(f, title="t2", labels=("dakr", "cost"))
    [put] = [r for r in server.requests if r.method == "PUT"]
    assert put.body == {"title": "t2", "add_labels": "dakr,cost"}
    assert server.pulls(GITLAB)[0]["labels"] == ["dakr", "cost"]


def test_gitea_finds_the_open_pull_request_on_a_later_page(server: ForgeServer,
                                                           make: Make) -> None:
    for i in range(60):
        server.create(GITEA, f"other/{i}")
    server.create(GITEA, "dakr/batch-1")
    f = make(GITEA)
    pr = _open(f)
    assert pr.number == 61 and pr.title == "dakr: 2 changes"
    assert server.count("GET", "/pulls") == 2


def test_from_settings(tmp_path: Path, server: ForgeServer) -> None:
    kinds = {"github": github.GitHubForge, "gitlab": gitlab.GitLabForge,
             "gitea": gitea.GiteaForge}
    for kind, cls in kinds.items():
        f = wiring.from_settings(kind, server.url, "acme/app", TOKEN, tmp_path, "")
        assert isinstance(f, cls) and TOKEN not in repr(f)
        assert isinstance(f, RestForge)
        f.close()
    assert isinstance(wiring.from_settings("local", "", "", None, tmp_path, str(tmp_path)),
                      local.LocalForge)
    with pytest.raises(errors.ConfigError):
        wiring.from_settings("bitbucket", "", "acme/app", None, tmp_path, "")
    with pytest.raises(errors.ConfigError):
        wiring.from_settings("gitea", "", "acme/app", None, tmp_path, "")
    with pytest.raises(errors.ConfigError):
        wiring.from_settings("github", "", "not-a-repo", None, tmp_path, "")
    derived = wiring.from_settings("github", server.url, "", None, tmp_path,
                                   "git@github.com:acme/app.git")
    assert isinstance(derived, github.GitHubForge) and derived.owner == "acme"
    derived.close()


@pytest.mark.parametrize("kind", KINDS)
def test_pull_request_into_another_base_is_not_reused(kind: str, server: ForgeServer,
                                                      make: Make) -> None:
    server.create(kind, "dakr/batch-1", base="release")
    pr = _open(make(kind))
    assert pr.number == 2 and pr.base == "main"
    server.create(kind, "dakr/batch-1", base="release-2")  # listed before ours from now on
    again = _open(make(kind), title="again")
    assert again.number == 2 and again.title == "again"


@pytest.mark.parametrize(("url", "repo"), [
    ("https://github.com/acme/app.git", "acme/app"),
    ("https://x-access-token:T@github.com/acme/app", "acme/app"),
    ("git@gitlab.example.com:group/sub/app.git", "group/sub/app"),
    ("ssh://git@gitea.local:2222/acme/app.git", "acme/app"),
    ("/srv/git/app.git", ""),
    ("file:///srv/git/app.git", ""),
    ("https://example.com/app.git", ""),
])
def test_repo_from_remote(url: str, repo: str) -> None:
    assert forge.repo_from_remote(url) == repo
