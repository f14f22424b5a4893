"""The dashboard: change points on scripted series, the site's files, and the page in a real browser."""

import datetime as dt
import html
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fakes.results import case_result

from pytest_e3p.report.dashboard import add_cli, detect_steps, write_dashboard
from pytest_e3p.storage import results
from pytest_e3p.storage.history import CommitInfo, append_run

# -- change points ---------------------------------------------------------------------------


def noisy(level, n, cv=0.01, seed=0):
    rng = random.Random(seed)
    return [level * (1 + rng.gauss(0, cv)) for _ in range(n)]


def test_a_step_is_found_at_the_commit_where_it_happened():
    series = noisy(40, 6, seed=1) + noisy(44.5, 6, seed=2)  # +11% at index 6
    (cp,) = detect_steps(series, min_step=0.05)
    assert cp.index == 6
    assert cp.before == pytest.approx(40, rel=0.02) and cp.after == pytest.approx(44.5, rel=0.02)
    assert cp.change() == pytest.approx(0.11, abs=0.02)


def test_noise_an_outlier_and_a_step_below_the_minimum_are_not_steps():
    assert detect_steps(noisy(40, 20, cv=0.02, seed=3), min_step=0.05) == []
    with_outlier = noisy(40, 5, seed=4) + [52.0] + noisy(40, 5, seed=5)
    assert detect_steps(with_outlier, min_step=0.05) == []
    small = noisy(40, 6, cv=0.002, seed=6) + noisy(40.8, 6, cv=0.002, seed=7)  # +2%: clear, but under 5%
    assert detect_steps(small, min_step=0.05) == []
    assert [cp.index for cp in detect_steps(small, min_step=0.01)] == [6]


def test_several_steps_over_the_history_not_only_the_last_pair():
    series = noisy(40, 5, seed=8) + noisy(46, 5, seed=9) + noisy(40, 5, seed=10)
    steps = detect_steps(series, min_step=0.05)
    assert [cp.index for cp in steps] == [5, 10]
    assert steps[0].change() > 0.1 and steps[1].change() < -0.1


def test_a_step_at_the_newest_run_and_short_or_absolute_series():
    assert [cp.index for cp in detect_steps(noisy(40, 6, seed=11) + [46.0], min_step=0.05)] == [6]
    assert detect_steps([40.0, 48.0], min_step=0.05) == []  # two points: the gate's business
    top1 = [81.2] * 4 + [80.1] * 4  # deterministic accuracy, in points
    (cp,) = detect_steps(top1, min_step=0.5, relative=False)
    assert cp.index == 4 and cp.change(relative=False) == pytest.approx(-1.1)
    assert detect_steps(top1, min_step=2.0, relative=False) == []


# -- a scripted history ----------------------------------------------------------------------


SHAS = [f"{i:x}" * 2 + "c0ffee" + f"{i:02d}" * 15 for i in range(1, 9)]  # 8 distinct fake commits
STEP_RUN = 5  # deit_tiny's energy on the rtx3050 steps up here


def _case(cid, model, device, dataset, energy, kind="measured", latency=5.0, top1=None, **kw):
    return case_result(
        cid,
        model=model,
        device=device,
        dataset=dataset,
        batch_size=64,
        energy_kind=kind,
        energy_source="nvml" if kind == "measured" else "cpu-time estimate",
        energy_mj_per_image=energy,
        latency_ms_per_image=latency,
        energy_mj_per_image_samples=noisy(energy, 15, seed=int(energy * 10)),
        latency_ms_per_image_samples=noisy(latency, 15),
        top1=top1,
        top1_source="measured" if top1 is not None else "unavailable",
        sam=1.2,
        **kw,
    )


def scripted_history(folder: Path) -> Path:
    """8 commits x 2 devices: a regression step on one case, an improvement on another, a case that
    changes energy kind, an estimated-energy device, a cifar10 case with measured top-1."""
    start = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    e_deit = noisy(40, STEP_RUN, seed=21) + noisy(46, 8 - STEP_RUN, seed=22)
    e_levit = noisy(20, 8, seed=23)
    lat_cpu = noisy(30, 3, seed=24) + noisy(24, 5, seed=25)
    for i, sha in enumerate(SHAS):
        commit = CommitInfo(sha=sha, branch="main", dirty=False, subject=f"change number {i}", source="git")
        regressed = i >= STEP_RUN
        gpu = [
            _case(
                "deit_tiny_patch16_224-rtx3050-synthetic",
                "deit_tiny_patch16_224.fb_in1k",
                "rtx3050",
                "synthetic",
                e_deit[i],
                verdict="regressed" if regressed else "unchanged",
                change_vs_baseline=e_deit[i] / 40.0 - 1,
            ),
            _case(
                "levit_128s-rtx3050-synthetic",
                "levit_128s.fb_dist_in1k",
                "rtx3050",
                "synthetic",
                e_levit[i],
                latency=2.1,
                verdict="unchanged",
                change_vs_baseline=e_levit[i] / 20.0 - 1,
            ),
            _case("levit_128s-rtx3050-cifar10", "levit_128s.fb_dist_in1k", "rtx3050", "cifar10", e_levit[i] * 1.01, latency=2.2, top1=91.3 if i < 6 else 89.9),
        ]
        cpu = [
            _case("deit_tiny_patch16_224-cpu-synthetic", "deit_tiny_patch16_224.fb_in1k", "cpu", "synthetic", 300 + i, kind="estimate", latency=lat_cpu[i]),
            # the sensor became readable at run 4: measured from there on, never on the estimate's axis
            _case(
                "levit_128s-cpu-synthetic",
                "levit_128s.fb_dist_in1k",
                "cpu",
                "synthetic",
                120 if i < 4 else 95,
                kind="estimate" if i < 4 else "measured",
                latency=9.0,
            ),
        ]
        for device, hw, cases in (("rtx3050", "NVIDIA GeForce RTX 3050", gpu), ("cpu", "Intel Xeon", cpu)):
            rf = results.ResultsFile(
                device={"name": device, "kind": "cuda" if device != "cpu" else "cpu", "identity": {"name": hw}},
                environment={"torch": "2.5"},
                protocol={"tolerances": {"energy": 0.05}},
                cases={c.case_id: c for c in cases},
            )
            append_run(rf, folder, {"hostname": f"runner-{device}"}, commit=commit, when=start + dt.timedelta(hours=i, minutes=1 if device == "cpu" else 0))
    return folder


ALL_CASES = [
    "deit_tiny_patch16_224-rtx3050-synthetic",
    "levit_128s-rtx3050-synthetic",
    "levit_128s-rtx3050-cifar10",
    "deit_tiny_patch16_224-cpu-synthetic",
    "levit_128s-cpu-synthetic",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    site = write_dashboard(scripted_history(root / "history"), root / "site")
    assert site.problems == [] and len(site.runs) == 16 and len(site.series) == len(ALL_CASES)
    assert sorted((st.series.case_id, st.metric.key, st.run.commit.sha) for st in site.regressions) == [
        ("deit_tiny_patch16_224-rtx3050-synthetic", "energy_measured", SHAS[STEP_RUN]),
        ("levit_128s-rtx3050-cifar10", "top1", SHAS[6]),
    ]
    return site.index


def test_the_site_is_self_contained_and_lists_every_case_and_the_step(site):
    page = site.read_text()
    assert (site.parent / "assets" / "dashboard.js").is_file() and (site.parent / "assets" / "dashboard.css").is_file()
    assert not re.search(r'(src|href)="(https?:)?//', page), "no CDN or other network reference"
    for cid in ALL_CASES:
        assert f"<code>{cid}</code>" in page
    regressions = page.split('id="regressions"')[1].split("</section>")[0]
    assert SHAS[STEP_RUN][:8] in regressions and "deit_tiny_patch16_224-rtx3050-synthetic" in regressions
    assert "levit_128s-rtx3050-synthetic" not in regressions  # flat: no step
    assert "top-1" in regressions  # cifar10 top-1 dropped 1.4 points at run 6
    assert "for the better" in page  # the CPU latency step down is listed apart


def test_measured_and_estimated_energy_are_never_on_one_axis(site):
    page = site.read_text()
    chart = page.split('data-chart-for="case-levit_128s-cpu-synthetic')[1].split("</svg>")[0]
    # two rows, each with its own y label, and no baseline mixing them
    assert chart.count("energy/image (mJ)") == 2 and "ESTIMATE" in chart and "measured" in chart


def test_dashboard_command(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))
    hist = scripted_history(tmp_path / "h")
    (hist / "broken.json").write_text("{")
    args = parser.parse_args(["dashboard", str(hist), "--out", str(tmp_path / "site")])
    assert args.run(args) == 0
    captured = capsys.readouterr()
    assert "dashboard written to" in captured.out and "16 run(s), 5 case(s)" in captured.out and "skipped: broken.json" in captured.err
    assert "STEP deit_tiny_patch16_224-rtx3050-synthetic (fp32, batch 64, 224x224): energy +" in captured.out
    assert f"at {SHAS[STEP_RUN][:8]} (main)" in captured.out
    assert "broken.json" in (tmp_path / "site" / "index.html").read_text()
    (tmp_path / "empty").mkdir()
    args = parser.parse_args(["dashboard", str(tmp_path / "empty"), "--out", str(tmp_path / "s1")])
    assert args.run(args) == 0 and "No runs yet" in (tmp_path / "s1" / "index.html").read_text()
    args = parser.parse_args(["dashboard", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s2")])
    assert args.run(args) == 2
    args = parser.parse_args(["dashboard", str(hist), "--out", str(tmp_path / "s3"), "--tolerance", "energy=lots"])
    assert args.run(args) == 2


# -- in a real browser -----------------------------------------------------------------------


def find_browser() -> str | None:
    for name in (os.environ.get("E3P_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def headless(browser: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Chromium's own headless mode; --no-sandbox because CI runs as root."""
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        *extra,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def page_errors(stderr: str) -> list[str]:
    """Console messages and uncaught exceptions as Chromium logs them (`INFO:CONSOLE:<line>] "..."`,
    with no level): the page writes nothing to the console, so any of them is a finding."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = find_browser()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install -y chromium, or set E3P_CHROMIUM)")
    probe = tmp_path_factory.mktemp("probe")
    (probe / "p.html").write_text("<p id=x>ok</p>")
    try:
        out = headless(exe, (probe / "p.html").as_uri(), probe / "profile", "--dump-dom")
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Chromium at {exe} does not start: {exc}")
    if 'id="x"' not in out.stdout:
        pytest.skip(f"Chromium at {exe} does not run headless: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
    return exe


def test_the_page_in_a_headless_browser(site, browser, tmp_path):
    out = headless(browser, site.as_uri(), tmp_path / "profile", "--dump-dom")
    dom = out.stdout
    assert out.returncode == 0, out.stderr[-2000:]
    assert page_errors(out.stderr) == []
    assert 'data-e3p-status="ready"' in dom, "the page's script did not finish: " + (re.findall(r'id="e3p-errors"[^>]*>([^<]*)', dom) or [""])[0]
    assert re.search(r'<div id="e3p-errors" role="alert" hidden="">\s*</div>', dom), "errors were written into the page"
    for cid in ALL_CASES:  # every case: a summary row and a section
        assert f"<code>{cid}</code>" in dom
    assert dom.count('class="case-row"') == len(ALL_CASES)
    # every chart drew: the browser laid out an SVG with paths (the script marks it)
    charts = re.findall(r'<div class="chart" data-chart-for="([^"]+)" data-rendered="(\w+)"', dom)
    assert len(charts) == len(ALL_CASES) and all(r == "yes" for _, r in charts), charts
    # the regression step is drawn on its chart and listed with its commit
    deit = next(k for k, _ in charts if k.startswith("case-deit_tiny_patch16_224-rtx3050-synthetic"))
    assert f'id="{deit}-step-energy_measured-0"' in dom and f'id="{deit}-gate-regressed"' in dom
    regressions = dom.split('id="regressions"')[1].split("</section>")[0]
    assert SHAS[STEP_RUN][:8] in regressions
    assert "5 of 5 cases" in dom


def test_the_filters_work_in_the_browser(site, browser, tmp_path):
    out = headless(browser, site.as_uri() + "?device=cpu", tmp_path / "profile", "--dump-dom")
    assert page_errors(out.stderr) == [] and 'data-e3p-status="ready"' in out.stdout
    rows = re.findall(r'<tr class="case-row" ([^>]*)>', out.stdout)
    shown = [r for r in rows if "hidden" not in r]
    assert len(rows) == 5 and len(shown) == 2 and all('data-device="cpu' in r for r in shown)
    assert "2 of 5 cases" in out.stdout


def test_the_browser_check_catches_a_broken_page(site, browser, tmp_path):
    broken = tmp_path / "site"
    shutil.copytree(site.parent, broken)
    page = (broken / "index.html").read_text()
    (broken / "index.html").write_text(page.replace("</body>", '<script>console.error("boom"); no_such_function();</script><img src="gone.png"></body>'))
    out = headless(browser, (broken / "index.html").as_uri(), tmp_path / "profile", "--dump-dom")
    assert 'data-e3p-status="error"' in out.stdout
    box = out.stdout.split('id="e3p-errors"')[1].split("</div>")[0]
    assert "console.error: boom" in box and "Uncaught ReferenceError: no_such_function" in box and "failed to load" in box
    assert any("boom" in line for line in page_errors(out.stderr)) and any("Uncaught" in line for line in page_errors(out.stderr))


# Runs before anything else on the page: an alert() from injected markup marks the page instead of
# blocking (headless Chromium would dismiss it unseen).
ALERT_SPY = "<script>window.alert = function (m) { document.documentElement.setAttribute('data-alerted', String(m)); };</script>"


def test_hostile_strings_in_every_field_run_no_script_in_the_browser(browser, tmp_path):
    from test_untrusted_outputs import HOSTILE, hostile_history

    site = write_dashboard(hostile_history(tmp_path / "h"), tmp_path / "site")
    assert site.problems == [] and len(site.series) == len(HOSTILE)
    page = site.index.read_text()
    spied = tmp_path / "site" / "spied.html"
    spied.write_text(page.replace("<head>", "<head>" + ALERT_SPY, 1))
    control = tmp_path / "site" / "control.html"  # the spy works: a real alert is caught
    control.write_text(page.replace("<head>", "<head>" + ALERT_SPY, 1).replace("</body>", "<script>alert('control')</script></body>"))
    out = headless(browser, spied.as_uri(), tmp_path / "profile", "--dump-dom")
    dom = out.stdout
    assert page_errors(out.stderr) == []  # no failed <img src=x>, no script error
    assert "<title>pytest-e3p energy dashboard</title>" in dom  # document.title unchanged
    assert 'data-alerted="' not in dom  # no alert() ran
    assert 'data-e3p-status="ready"' in dom and dom.count('class="case-row"') == len(HOSTILE)
    charts = re.findall(r'<div class="chart" data-chart-for="[^"]+" data-rendered="(\w+)"', dom)
    assert charts == ["yes"] * len(HOSTILE)
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom  # shown as text
    out = headless(browser, control.as_uri(), tmp_path / "profile2", "--dump-dom")
    assert 'data-alerted="control"' in out.stdout


def test_charts_are_drawn_for_the_most_relevant_cases_up_to_the_cap(tmp_path, capsys):
    hist = scripted_history(tmp_path / "h")
    site = write_dashboard(hist, tmp_path / "site", max_charts=2)
    page = site.index.read_text()
    drawn = re.findall(r'data-chart-for="([^"]+)"', page)
    # the two regressed series (the energy step, the top-1 drop) get the two charts
    assert len(drawn) == 2 and all(k.startswith(("case-deit_tiny_patch16_224-rtx3050", "case-levit_128s-rtx3050-cifar10")) for k in drawn)
    assert len(site.undrawn) == 3 and "3 case(s) without a chart" in page
    for s in site.undrawn:  # every summary link still lands somewhere
        assert f'<tr class="undrawn-row" id="{s.key}"' in page
    parser = __import__("argparse").ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dashboard", str(hist), "--out", str(tmp_path / "s2"), "--max-charts", "1"])
    assert args.run(args) == 0
    assert "charts drawn for 1 case(s); 4 more listed without a chart (--max-charts)" in capsys.readouterr().out


# -- the answer, skipped cases, the legend (issue 29) ----------------------------------------


def _skip_history(folder: Path) -> Path:
    """One run of two cases on the rtx3050: deit_tiny measured, its prune-heads-25 skipped (the
    README's example that removes no head), and a model name holding markup."""
    ok = _case("deit_tiny_patch16_224-rtx3050-synthetic", "deit_tiny_patch16_224.fb_in1k", "rtx3050", "synthetic", 40.0, top1=72.0)
    hostile = _case("<b>bold</b>-rtx3050-synthetic", "<b>bold</b>", "rtx3050", "synthetic", 80.0, top1=75.0)
    skipped = case_result(
        "deit_tiny_patch16_224-rtx3050-synthetic-prune-heads-25",
        model="deit_tiny_patch16_224.fb_in1k",
        device="rtx3050",
        variant="prune-heads-25",
        status="skipped",
        reason="removes no head of 3 per block; it needs P >= 34",
    )
    rf = results.ResultsFile(
        device={"name": "rtx3050", "kind": "cuda", "identity": {"name": "NVIDIA GeForce RTX 3050"}},
        environment={},
        protocol={},
        cases={c.case_id: c for c in (ok, hostile, skipped)},
    )
    commit = CommitInfo(sha=SHAS[0], branch="main", dirty=False, subject="one run", source="git")
    append_run(rf, folder, {"hostname": "runner"}, commit=commit, when=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))
    return folder


def test_a_skipped_case_is_on_the_dashboard_with_its_reason(tmp_path):
    page = write_dashboard(_skip_history(tmp_path / "h"), tmp_path / "site").index.read_text()
    row = next(r for r in page.split("<tr ") if "prune-heads-25" in r and "case-row" in r)
    # the reason in the row itself (not only a tooltip), escaped
    assert '<span class="badge warn">skipped</span><div class="cond reason">removes no head of 3 per block; it needs P &gt;= 34</div>' in row
    assert '<td class="cond">prune-heads-25, fp32, batch 16, 224x224</td>' in row  # the form, apart from the fp32 row


def test_the_answer_heads_the_dashboard_escaped(tmp_path):
    from pytest_e3p.report.answer import answer_lines
    from pytest_e3p.report.dashboard import latest_cases
    from pytest_e3p.storage.history import load_history

    hist = _skip_history(tmp_path / "h")
    page = write_dashboard(hist, tmp_path / "site").index.read_text()
    lines = answer_lines(latest_cases(load_history(hist)[0]))
    assert lines and page.index('id="answer"') < page.index('id="summary"')
    answer = page.split('id="answer"')[1].split("</section>")[0]
    for line in lines:
        assert f"<p>{html.escape(line, quote=True)}</p>" in answer
    assert "<b>bold</b>" not in answer and "&lt;b&gt;bold&lt;/b&gt;" in answer


def test_the_chart_legend_sits_inside_the_figure_below_the_ticks(tmp_path):
    # the legend beside the axes was cut at the right edge (issue 29): it is under the axes, inside
    # the frame, clear of the commit ticks and the axis label
    from pytest_e3p.report.dashboard import METRICS, Reference, build_series, chart_figure
    from pytest_e3p.storage.history import load_history

    runs, _ = load_history(scripted_history(tmp_path / "h"))
    series = next(s for s in build_series(runs) if s.case_id == "deit_tiny_patch16_224-rtx3050-synthetic")
    ref = Reference({}, {})
    fig = chart_figure(series, ref, [m for m in METRICS if series.values(m)])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # the page's SVG has the same layout; Agg measures it
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    box, frame = legend.get_window_extent(renderer), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    bottom = fig.axes[-1]
    for label in [*bottom.get_xticklabels(), bottom.xaxis.label]:
        assert not box.overlaps(label.get_window_extent(renderer))


def test_a_flat_trend_is_not_drawn_as_a_cliff(tmp_path):
    # energy 29.34-29.37 mJ over 6 runs: auto-scaled, the 0.1 % wobble filled the row
    from pytest_e3p.report.dashboard import ENERGY_MEASURED, Reference, build_series, chart_figure
    from pytest_e3p.storage.history import load_history

    for i, energy in enumerate([29.34, 29.36, 29.37, 29.35, 29.34, 29.36]):
        c = _case("m-cpu-synthetic", "m.tag", "cpu", "synthetic", energy)
        rf = results.ResultsFile(device={"name": "cpu", "identity": {"name": "x"}}, environment={}, protocol={}, cases={c.case_id: c})
        commit = CommitInfo(sha=SHAS[i], branch="main", dirty=False, subject="", source="git")
        append_run(rf, tmp_path / "h", {"hostname": "r"}, commit=commit, when=dt.datetime(2025, 3, 1, i, tzinfo=dt.timezone.utc))
    (series,) = build_series(load_history(tmp_path / "h")[0])
    fig = chart_figure(series, Reference({}, {}), [ENERGY_MEASURED])
    low, high = fig.axes[0].get_ylim()
    assert high - low >= 0.1 * 29.355  # at least +/- 5 % of the median: the wobble is a flat line
