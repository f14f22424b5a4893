"""The pull-request comment (issue 28): silent unless a case regressed, turned inconclusive or became
unstable; one comment per pull request and device, updated in place on a later push, marked
resolved by a clean run. The command talks to a local server that emulates GitHub's comments API."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from fakes.results import case_result, results_file

from pytest_e3p import cli
from pytest_e3p.report.pr_comment import MARKER, NOTHING_CHANGED, comment_body, device_marker, flagged_cases, resolved_body
from pytest_e3p.storage import results


def _gated(cid, verdict, change=None, noise=0.02, unstable=False, changes=(), **fields):
    fields.setdefault("device", cid.split("-")[1])
    return case_result(
        cid,
        energy_mj=10.0,
        energy_mj_per_image=10.0,
        verdict=verdict,
        change_vs_baseline=change,
        noise_vs_baseline=noise,
        unstable=unstable,
        changes_vs_baseline=list(changes),
        **fields,
    )


def _file(*cases, device="rtx3050"):
    return results_file(list(cases), device=device, created="2026-12-07T10:00:00+00:00")


CLEAN = _file(_gated("a-rtx3050-synthetic", "unchanged", 0.01, model="a.tag"), _gated("b-rtx3050-synthetic", "improved", -0.2, model="b.tag"))
REGRESSED = _file(
    _gated("a-rtx3050-synthetic", "regressed", 0.123, 0.021, changes=["torch 2.3.0 -> 2.4.0", "GPU clock max 1800 -> 1500 MHz"], model="a.tag"),
    _gated("b-rtx3050-synthetic", "unchanged", 0.0, model="b.tag"),
)


def test_no_comment_when_nothing_regressed():
    assert flagged_cases(CLEAN) == []
    assert comment_body(CLEAN) is None


def test_a_regression_gives_the_table_and_what_changed():
    body = comment_body(REGRESSED)
    assert body is not None and body.startswith(f"{MARKER}\n{device_marker('rtx3050')}\n")
    assert "| case | energy change | noise | verdict |" in body
    assert "| a | +12.3% | +/-2.1% | regressed |" in body
    assert "- torch 2.3.0 -&gt; 2.4.0" in body and "- GPU clock max 1800 -&gt; 1500 MHz" in body  # rendered as ->
    assert "| b |" not in body  # an unchanged case is not in the comment


def test_a_regression_with_no_recorded_change_names_the_code():
    body = comment_body(_file(_gated("a-rtx3050-synthetic", "regressed", 0.2, model="a.tag")))
    assert body is not None and NOTHING_CHANGED in body


def test_inconclusive_is_counted():
    body = comment_body(_file(_gated("a-rtx3050-synthetic", "inconclusive", 0.04, 0.05, model="a.tag")))
    assert body is not None and "| a | +4.0% | +/-5.0% | inconclusive |" in body


def test_newly_unstable_is_counted_and_unstable_in_the_baseline_too_is_not():
    now = _file(_gated("a-rtx3050-synthetic", "unchanged", 0.01, 0.09, unstable=True, model="a.tag"))
    base_stable = _file(_gated("a-rtx3050-synthetic", "", unstable=False, model="a.tag"))
    base_unstable = _file(_gated("a-rtx3050-synthetic", "", unstable=True, model="a.tag"))
    body = comment_body(now, base_stable)
    assert body is not None and "| a | +1.0% | +/-9.0% | unchanged, newly unstable |" in body
    assert comment_body(now, base_unstable) is None
    assert comment_body(now) is not None  # no baseline given: an unstable case is news


def test_the_verdicts_are_matched_on_the_members_not_on_display_words():
    # a verdict word this module does not know (another helper's) is not a regression
    assert comment_body(_file(_gated("a-rtx3050-synthetic", "much better", -0.3, model="a.tag"))) is None


def test_an_estimate_is_labelled_and_markup_is_escaped():
    body = comment_body(_file(_gated("x-rtx3050-synthetic", "regressed", 0.1, energy_kind="estimate", model="<b>x</b>.tag", changes=["a | b"])))
    assert body is not None and "+10.0% (est.)" in body
    assert "<b>" not in body and "a \\| b" in body


# -- the command against a local GitHub ------------------------------------------------------


class FakeGitHub:
    """GitHub's issue comments endpoints, in memory, on a loopback port; pages of 2 comments."""

    def __init__(self, others=0):
        self.comments = [{"id": 1000 + i, "body": f"a human's comment {i}"} for i in range(others)]
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code, payload, headers=()):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

            def do_GET(self):
                fake.requests.append(("GET", self.path, self.headers.get("Authorization")))
                url = urlparse(self.path)
                if not re.fullmatch(r"/repos/o/r/issues/7/comments", url.path):
                    return self._answer(404, {"message": "Not Found"})
                page = int(parse_qs(url.query).get("page", ["1"])[0])
                items = fake.comments[(page - 1) * 2 : page * 2]
                more = [("Link", f'<{fake.url}/repos/o/r/issues/7/comments?per_page=2&page={page + 1}>; rel="next"')] if page * 2 < len(fake.comments) else []
                self._answer(200, items, more)

            def do_POST(self):
                fake.requests.append(("POST", self.path, self.headers.get("Authorization")))
                if self.path != "/repos/o/r/issues/7/comments":
                    return self._answer(404, {"message": "Not Found"})
                new = {"id": 5000 + len(fake.comments), "body": self._body()["body"]}
                fake.comments.append(new)
                self._answer(201, new)

            def do_PATCH(self):
                fake.requests.append(("PATCH", self.path, self.headers.get("Authorization")))
                m = re.fullmatch(r"/repos/o/r/issues/comments/(\d+)", self.path)
                target = next((c for c in fake.comments if m and c["id"] == int(m.group(1))), None)
                if target is None:
                    return self._answer(404, {"message": "Not Found"})
                target["body"] = self._body()["body"]
                self._answer(200, target)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def methods(self):
        return [m for m, _, _ in self.requests]

    def ours(self):
        return [c for c in self.comments if c["body"].startswith(MARKER)]


@pytest.fixture
def github(monkeypatch):
    fake = FakeGitHub(others=5)  # three pages before ours
    fake.thread.start()
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    monkeypatch.setenv("GITHUB_REPOSITORY", "o/r")
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _event(tmp_path, monkeypatch, number=7):
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"pull_request": {"number": number}}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(path))


def _save(rf, path):
    results.save(rf, path)
    return str(path)


def test_first_push_posts_a_second_updates_the_same_comment_and_a_clean_run_resolves_it(github, tmp_path, monkeypatch, capsys):
    _event(tmp_path, monkeypatch)
    first = _save(REGRESSED, tmp_path / "r1.json")
    assert cli.main(["pr-comment", first]) == 0
    assert github.methods().count("POST") == 1 and len(github.ours()) == 1
    assert all(auth == "Bearer t0ken" for _, _, auth in github.requests)
    comment_id = github.ours()[0]["id"]
    assert "posted comment" in capsys.readouterr().out

    worse = _file(_gated("a-rtx3050-synthetic", "regressed", 0.3, 0.02, model="a.tag"), _gated("b-rtx3050-synthetic", "regressed", 0.2, model="b.tag"))
    github.requests.clear()
    assert cli.main(["pr-comment", _save(worse, tmp_path / "r2.json")]) == 0
    assert "POST" not in github.methods() and github.methods().count("PATCH") == 1
    [ours] = github.ours()
    assert ours["id"] == comment_id and "+30.0%" in ours["body"] and "| b |" in ours["body"]
    assert f"updated comment {comment_id}" in capsys.readouterr().out

    github.requests.clear()
    assert cli.main(["pr-comment", _save(CLEAN, tmp_path / "r3.json")]) == 0
    assert "POST" not in github.methods()
    [ours] = github.ours()
    assert ours["id"] == comment_id and "resolved: no case regresses now" in ours["body"]
    github.requests.clear()
    assert cli.main(["pr-comment", _save(CLEAN, tmp_path / "r3.json")]) == 0  # already resolved: left as it is
    assert github.methods() and set(github.methods()) == {"GET"}


def test_a_clean_run_posts_nothing(github, tmp_path, capsys):
    assert cli.main(["pr-comment", _save(CLEAN, tmp_path / "r.json"), "--pr", "7"]) == 0
    assert "POST" not in github.methods() and "PATCH" not in github.methods() and github.ours() == []
    assert "no comment" in capsys.readouterr().out


def test_each_device_keeps_its_own_comment(github, tmp_path):
    assert cli.main(["pr-comment", _save(REGRESSED, tmp_path / "a.json"), "--pr", "7"]) == 0
    other = _file(*REGRESSED.cases.values(), device="orin-nx")
    assert cli.main(["pr-comment", _save(other, tmp_path / "b.json"), "--pr", "7"]) == 0
    assert github.methods().count("POST") == 2 and len(github.ours()) == 2


def test_github_unreachable_is_one_line_and_exit_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("GITHUB_TOKEN", "t")
    assert cli.main(["pr-comment", _save(REGRESSED, tmp_path / "r.json"), "--repo", "o/r", "--pr", "7"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pr-comment: error:") and "not posted" in err[0]


def test_github_refusing_is_one_line_and_exit_3(github, tmp_path, capsys):
    assert cli.main(["pr-comment", _save(REGRESSED, tmp_path / "r.json"), "--repo", "o/r", "--pr", "8"]) == 3  # no such pull request
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "404" in err[0] and "Not Found" in err[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    for var in ("GITHUB_REPOSITORY", "GITHUB_EVENT_PATH", "GITHUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    path = _save(REGRESSED, tmp_path / "r.json")
    assert cli.main(["pr-comment", path]) == 2
    assert "--repo OWNER/NAME --pr N" in capsys.readouterr().err
    assert cli.main(["pr-comment", path, "--repo", "o/r", "--pr", "7"]) == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli.main(["pr-comment", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0]


def test_print_only_prints_the_body_and_posts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")
    assert cli.main(["pr-comment", _save(REGRESSED, tmp_path / "r.json"), "--print-only"]) == 0
    assert "| a | +12.3% | +/-2.1% | regressed |" in capsys.readouterr().out


def test_the_resolved_body_keeps_the_markers():
    assert resolved_body(CLEAN).startswith(f"{MARKER}\n{device_marker('rtx3050')}\n")
