"""The pull-request comment: silent unless a case regressed, turned inconclusive or became unstable.

From a gated run's results file (each case's verdict, change and noise against the baseline, its
`unstable` flag and `changes_vs_baseline`, what its recorded conditions say changed) `comment_body`
writes the comment: the table of the cases that need a look and, per case, what changed since the
baseline's runs. A case is "newly unstable" when it is unstable now and was not in the baseline
(every unstable case counts where no baseline is given). Nothing to say: None, and no comment.

`python -m pytest_e3p pr-comment RESULTS.json` posts it on the pull request (report/github.py),
updating its own earlier comment in place: one comment per pull request and device, found by the
hidden markers the body starts with. A clean run after a comment turns that comment into a
"resolved" note (the history of the conversation stays readable); a clean run with no comment
before it posts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gate.verdict import Verdict
from ..hardware.sensors.base import EnergyKind
from ..storage.results import CaseResult, ResultsFile, ResultsFileError, load_for_command
from ..text import first_line, markdown_cell
from .labels import case_labels

MARKER = "<!-- pytest-e3p:pr-comment -->"
NOTHING_CHANGED = "nothing recorded changed: the code is the suspect"

# exit status of the command (PR_COMMENT_EXIT_CODES says the same to users)
POSTED, BAD_INPUT, GITHUB_FAILED = 0, 2, 3
PR_COMMENT_EXIT_CODES = """exit status:
  0  the comment was posted, updated or marked resolved, or there was nothing to say
  2  bad input, one line on stderr: a results file unreadable, or (unless --print-only) no
     pull request named (--repo/--pr, or GITHUB_REPOSITORY and GITHUB_EVENT_PATH) or no GITHUB_TOKEN
  3  GitHub unreachable or refusing the request, one line on stderr (a workflow step that comments
     should not fail the job for it: continue-on-error)"""


def device_marker(device: str) -> str:
    """The marker of one device's comment: the devices' jobs of one pull request each keep their own."""
    return f"<!-- pytest-e3p:pr-comment device={markdown_cell(device).replace('--', '- -')} -->"


@dataclass(frozen=True)
class Flagged:
    """A case the comment names, and why: regressed, inconclusive, newly unstable."""

    case: CaseResult
    why: tuple[str, ...]


def flagged_cases(current: ResultsFile, baseline: ResultsFile | None = None) -> list[Flagged]:
    """The cases that need a look, worst first (regressed, inconclusive, then only unstable)."""
    out = []
    for cid, c in sorted(current.cases.items()):
        why = []
        if c.verdict == Verdict.REGRESSED:
            why.append(Verdict.REGRESSED.value)
        elif c.verdict == Verdict.INCONCLUSIVE:
            why.append(Verdict.INCONCLUSIVE.value)
        base = baseline.cases.get(cid) if baseline is not None else None
        if c.unstable and not (base is not None and base.unstable):
            why.append("newly unstable")
        if why:
            out.append(Flagged(c, tuple(why)))
    severity = {Verdict.REGRESSED.value: 0, Verdict.INCONCLUSIVE.value: 1, "newly unstable": 2}
    return sorted(out, key=lambda f: (severity[f.why[0]], f.case.case_id))


def _title(current: ResultsFile) -> str:
    return f"pytest-e3p energy gate on {markdown_cell(current.device.get('name', '?'))}"


def comment_body(current: ResultsFile, baseline: ResultsFile | None = None) -> str | None:
    """The comment's Markdown, or None when no case regressed, turned inconclusive or became unstable."""
    flagged = flagged_cases(current, baseline)
    if not flagged:
        return None
    device = str(current.device.get("name", "?"))
    labels = case_labels([f.case for f in flagged])
    rows = ["| case | energy change | noise | verdict |", "|---|---|---|---|"]
    for f in flagged:
        c = f.case
        est = " (est.)" if c.energy_kind == EnergyKind.ESTIMATE else ""
        change = "-" if c.change_vs_baseline is None else f"{c.change_vs_baseline:+.1%}{est}"
        noise = "-" if c.noise_vs_baseline is None else f"+/-{c.noise_vs_baseline:.1%}"
        verdict = ", ".join(f.why) if c.verdict in (Verdict.REGRESSED, Verdict.INCONCLUSIVE) else ", ".join([str(c.verdict) or "not compared", *f.why])
        rows.append(f"| {markdown_cell(labels[c.case_id])} | {change} | {noise} | {markdown_cell(verdict)} |")
    lines = [
        MARKER,
        device_marker(device),
        f"### {_title(current)}: {len(flagged)} case(s) need a look",
        "",
        *rows,
        "",
        "**What changed since the baseline's runs**, per case:",
        "",
    ]
    for f in flagged:
        c = f.case
        code = " ".join(c.case_id.replace("`", "'").split())  # a code span shows its text as is: no markup, no entities
        lines.append(f"- **{markdown_cell(labels[c.case_id])}** (`{code}`)")
        if not c.verdict or c.verdict == Verdict.NEW:
            lines.append("  - not compared with the baseline (its passes alone spread wider than the energy tolerance)")
        else:
            lines += [f"  - {markdown_cell(line)}" for line in c.changes_vs_baseline] or [f"  - {NOTHING_CHANGED}"]
    lines += [
        "",
        "_noise: the smallest change the gate calls significant against the baseline's passes and runs; unstable: "
        "the case's own spread or its noise is wider than the energy tolerance. The job summary has the whole report._",
    ]
    return "\n".join(lines) + "\n"


def resolved_body(current: ResultsFile) -> str:
    """What an earlier comment becomes once a run of the pull request is clean."""
    device = str(current.device.get("name", "?"))
    when = f" (the run of {markdown_cell(current.created)})" if current.created else ""
    return (
        f"{MARKER}\n{device_marker(device)}\n### {_title(current)}: resolved: no case regresses now\n\n"
        f"The latest run{when} has no case regressed, inconclusive or newly unstable; this comment named some "
        "in an earlier push.\n"
    )


# -- the command -------------------------------------------------------------------------------


class InputError(Exception):
    """Bad input to the command; the message is its one line."""


def pull_request(repo: str | None, pr: int | None, env: Mapping[str, str]) -> tuple[str, int]:
    """OWNER/NAME and the pull request's number, from the arguments or the Actions variables."""
    repo = repo or env.get("GITHUB_REPOSITORY") or ""
    if pr is None and env.get("GITHUB_EVENT_PATH"):
        try:
            event = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the event file GITHUB_EVENT_PATH={env['GITHUB_EVENT_PATH']} ({first_line(exc)})") from None
        number = (event.get("pull_request") or {}).get("number") if isinstance(event, dict) else None
        pr = number if isinstance(number, int) else None
    if "/" not in repo or pr is None:
        raise InputError("no pull request named: give --repo OWNER/NAME --pr N (in Actions, GITHUB_REPOSITORY and a pull_request event)")
    return repo, pr


def _command(args: argparse.Namespace) -> int:
    from .github import GitHubError, IssueComments

    try:
        current = load_for_command(args.results)
        baseline = load_for_command(args.baseline) if args.baseline else None
    except ResultsFileError as exc:
        print(f"pr-comment: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    body = comment_body(current, baseline)
    if body is not None:
        print(body)
    elif args.print_only:
        print("pr-comment: no case regressed, turned inconclusive or became unstable: no comment")
        return POSTED
    if args.print_only:
        return POSTED
    env = os.environ
    try:
        repo, pr = pull_request(args.repo, args.pr, env)
        token = env.get("GITHUB_TOKEN") or ""
        if not token:
            raise InputError("no GITHUB_TOKEN in the environment (in a workflow: env: GITHUB_TOKEN: ${{ github.token }})")
    except InputError as exc:
        if body is None:  # nothing to post: nothing is missed
            print(f"pr-comment: no case regressed, turned inconclusive or became unstable: no comment ({exc})")
            return POSTED
        print(f"pr-comment: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    comments = IssueComments(env.get("GITHUB_API_URL") or "https://api.github.com", repo, pr, token)
    marker = device_marker(str(current.device.get("name", "?")))
    try:
        earlier = comments.find(lambda text: text.startswith(f"{MARKER}\n{marker}"))
        if body is None:
            if earlier is None:
                print("pr-comment: no case regressed, turned inconclusive or became unstable: no comment")
            elif earlier.body == (resolved := resolved_body(current)):
                print(f"pr-comment: nothing regresses; comment {earlier.id} already says resolved")
            else:
                comments.update(earlier.id, resolved)
                print(f"pr-comment: nothing regresses now: comment {earlier.id} on {repo}#{pr} marked resolved")
        elif earlier is None:
            new = comments.post(body)
            print(f"pr-comment: posted comment {new} on {repo}#{pr}")
        else:
            comments.update(earlier.id, body)
            print(f"pr-comment: updated comment {earlier.id} on {repo}#{pr}")
    except GitHubError as exc:
        print(f"pr-comment: error: {exc}; the comment was not posted (the results file is untouched)", file=sys.stderr)
        return GITHUB_FAILED
    return POSTED


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pr-comment",
        help="comment on the pull request when a case regressed, turned inconclusive or became unstable",
        description="Comment on the pull request, only when a case regressed, turned inconclusive or is newly unstable: the table "
        "of those cases and what changed since the baseline's runs. The comment is updated in place on later pushes (one per pull "
        "request and device), and marked resolved once a run is clean. Needs GITHUB_TOKEN; GITHUB_API_URL is honoured.",
        epilog=PR_COMMENT_EXIT_CODES,
    )
    p.add_argument("results", help="the gated run's results file (--e3p-results with --e3p-baseline)")
    p.add_argument("--baseline", default=None, help="the baseline it was compared with: a case unstable there too is not newly unstable")
    p.add_argument("--repo", default=None, help="OWNER/NAME (default: GITHUB_REPOSITORY)")
    p.add_argument("--pr", type=int, default=None, help="the pull request's number (default: the one of the event in GITHUB_EVENT_PATH)")
    p.add_argument("--print-only", action="store_true", help="print the comment, post nothing")
    p.set_defaults(run=_command)
