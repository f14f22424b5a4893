"""A pull request's comments through GitHub's REST API (urllib: no client library for three calls).

GET /repos/{owner}/{repo}/issues/{n}/comments (paginated, following the Link header), PATCH
/repos/{owner}/{repo}/issues/comments/{id}, POST /repos/{owner}/{repo}/issues/{n}/comments. The base
is GITHUB_API_URL (GitHub Enterprise, or a test's local server). Every failure is a GitHubError
with one line: the caller reports it and carries on.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..text import first_line

TIMEOUT_S = 20.0
PER_PAGE = 100  # GitHub's largest page
MAX_PAGES = 50  # 5000 comments: a pull request with more is not looked through further
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class GitHubError(Exception):
    """GitHub unreachable, or it refused a request; the message is one line."""


@dataclass(frozen=True)
class Comment:
    id: int
    body: str


class IssueComments:
    """The comments of one pull request (an issue, to the REST API)."""

    def __init__(self, api_url: str, repo: str, number: int, token: str) -> None:
        self.api = api_url.rstrip("/")
        self.repo, self.number, self.token = repo, number, token

    def _request(self, method: str, url: str, payload: dict[str, Any] | None = None) -> tuple[Any, str]:
        """The decoded JSON answer and its Link header."""
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("X-GitHub-Api-Version", "2022-11-28")
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("User-Agent", "pytest-e3p")  # GitHub refuses a request without one
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                return json.loads(resp.read().decode("utf-8") or "null"), resp.headers.get("Link", "")
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = str(json.loads(exc.read().decode("utf-8")).get("message", ""))
            except (ValueError, AttributeError, OSError):
                pass
            raise GitHubError(f"GitHub answered {exc.code} {exc.reason} to {method} {url}" + (f": {first_line(detail)}" if detail else "")) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # unreachable, timed out, or not JSON
            raise GitHubError(f"{method} {url} failed: {first_line(getattr(exc, 'reason', exc))}") from None

    def find(self, matches: Callable[[str], bool]) -> Comment | None:
        """The first comment whose body `matches`, or None."""
        url: str | None = f"{self.api}/repos/{self.repo}/issues/{self.number}/comments?per_page={PER_PAGE}"
        for _ in range(MAX_PAGES):
            if url is None:
                break
            page, link = self._request("GET", url)
            if not isinstance(page, list):
                raise GitHubError(f"GET {url}: not a list of comments")
            for item in page:
                body = item.get("body") if isinstance(item, dict) else None
                if isinstance(body, str) and matches(body) and isinstance(item.get("id"), int):
                    return Comment(item["id"], body)
            nxt = _NEXT.search(link)
            # the token goes to GitHub's API only, never to a host a header names
            url = nxt.group(1) if nxt and nxt.group(1).startswith(self.api + "/") else None
        return None

    def post(self, body: str) -> int:
        """Post a new comment; its id."""
        made, _ = self._request("POST", f"{self.api}/repos/{self.repo}/issues/{self.number}/comments", {"body": body})
        return int(made["id"]) if isinstance(made, dict) and isinstance(made.get("id"), int) else -1

    def update(self, comment_id: int, body: str) -> None:
        self._request("PATCH", f"{self.api}/repos/{self.repo}/issues/comments/{comment_id}", {"body": body})
