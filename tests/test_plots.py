"""The report's plots say no more than the measurements do (issue 29): intervals from the log pass
values never reach below zero, a flat series is drawn as percent from its median with the scale in
the axis label, labels tell apart cases that differ only by variant, batch or size and never
overlap, the variants plot has the per-pass spread as error bars, every PNG the report folder holds
is linked from report.md, and the dashboard's legend stays inside its chart.

The figures are rendered (Agg / SVG) and their artists' window extents read back: what is asserted
is what a reader sees."""

import re
import statistics

import pytest
from fakes.results import case_result, ranked_case, results_file

from pytest_e3p.measure.sustained import SustainedRun, Window, figure, value_axis
from pytest_e3p.report.markdown import accuracy_energy_figure, energy_error_bars, latency_error_bars, sustained_plot_name, write_report
from pytest_e3p.report.variants import plot_variants
from pytest_e3p.storage.records import SustainedRecord, VsReference
from pytest_e3p.storage.results import Status

pytest.importorskip("matplotlib")


def _extents(texts):
    """The label boxes as drawn: Text's extent (an Annotation's own adds its leader line)."""
    from matplotlib.text import Text

    fig = texts[0].figure
    fig.canvas.draw()  # an annotation's text is positioned when it is drawn
    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, renderer) for t in texts]


def _noisy_case():
    # pass values 10, 100 and 1000 mJ (ms): 2 sd of the linear values (about 1000) is larger than
    # the median (100), so a linear bar would reach -900; the log bar stays above zero
    c = ranked_case("noisy", "cpu", "synthetic", 100.0, 80.0, 60.0)
    c.energy_mj_per_image_passes = [10.0, 100.0, 1000.0]
    c.latency_ms_per_image, c.latency_ms_per_image_passes = 100.0, [10.0, 100.0, 1000.0]
    return c


def test_no_interval_reaches_below_zero_even_for_a_noisy_case():
    c = _noisy_case()
    assert 100.0 - 2 * statistics.stdev(c.energy_mj_per_image_passes) < 0  # linear: below zero
    for lo, hi in (energy_error_bars(c), latency_error_bars(c)):
        assert 0 < lo < 100.0 < hi
        assert lo * hi == pytest.approx(100.0**2)  # x/÷ one factor: symmetric in ratios
    quiet = ranked_case("quiet", "cpu", "synthetic", 50.0, 82.0, 61.0)
    fig, _, _ = accuracy_energy_figure([c, quiet], [0, 1], "t", {})
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0.0  # energy drawn from zero
    segments = [seg for coll in ax.collections for seg in coll.get_segments()]
    assert segments and min(x for seg in segments for x, _ in seg) > 0  # no bar crosses zero


def _windows(power_w, latency_ms):
    # 1 s windows of 100 images: energy in mJ = power * 1000, duration = latency * images / 1000
    out, t = [], 0.0
    for i, (p, lat) in enumerate(zip(power_w, latency_ms)):
        d = lat * 100 / 1000.0
        out.append(Window(i, t, d, 100, p * 1000.0 * d, temperature_c=61.0 + 0.1 * (i % 2), clock_ratio=1.0, throttled=False))
        t += d
    return out


def test_a_flat_series_is_drawn_as_percent_from_its_median_with_the_scale_stated():
    # the newcomer's sustained run: power 29.34-29.37 W, latency 17.6-17.8 ms (issue 29)
    power = [29.34, 29.36, 29.37, 29.35, 29.34, 29.36]
    latency = [17.6, 17.7, 17.8, 17.7, 17.6, 17.7]
    from pytest_e3p.hardware.sensors.base import SensorInfo

    sensor = SensorInfo(name="nvml-counter", kind="measured", boundary="GPU board", unit="mJ", update_period_s=0.1)
    fig = figure(SustainedRun(_windows(power, latency), 1.0, 6.0, sensor=sensor, thermal=True))
    ax_power, ax_temp, ax_clock, ax_latency = fig.axes
    for ax, unit in ((ax_power, "W"), (ax_latency, "ms/img")):
        assert "% from the median" in ax.get_ylabel() and unit in ax.get_ylabel()
        low, high = ax.get_ylim()
        assert low <= -1.0 and high >= 1.0  # at least +/- 1 %: a 0.1 % wobble stays a wobble
        drawn = [v for v in ax.patches[-1].get_data().values if v == v]
        assert max(abs(v) for v in drawn) < 0.7  # the values themselves: within 0.7 % of the median
    assert ax_power.get_ylabel().endswith("(29.36 W)")  # the median, 29.355
    assert ax_clock.get_ylim() == (0.0, 1.05)
    assert ax_temp.get_ylim()[1] - ax_temp.get_ylim()[0] >= 10.0  # 0.1 C is not the panel's height


def test_a_series_that_moves_is_drawn_from_zero_in_its_unit():
    axis = value_axis([5.0, 9.0, 20.0], "latency", "ms/img")
    assert not axis.relative and axis.label == "latency (ms/img)" and axis(9.0) == 9.0
    assert axis.limits([5.0, 9.0, 20.0])[0] == 0.0


def _deit(variant="fp32", batch=64, size=224, energy: float | None = 40.0, top1=72.0):
    suffix = "" if variant == "fp32" else f"-{variant}"
    suffix += "" if batch == 64 else f"-bs{batch}"
    suffix += "" if size == 224 else f"-{size}px"
    return case_result(
        f"deit_tiny_patch16_224-cpu-imagenet{suffix}",
        40.0,
        model="deit_tiny_patch16_224.fb_in1k",
        dataset="imagenet",
        variant=variant,
        batch_size=batch,
        image_size=[3, size, size],
        energy_mj_per_image=energy,
        latency_ms_per_image=5.0,
        top1=top1,
        top1_source="measured",
        netscore=60.0,
        params_m=5.7,
        gmacs=1.3,
        top1_ref=72.2,
        sam=None if energy is None else 1.0 + top1 / 100 - energy / 100,
    )


FOUR = [_deit(), _deit("onnxruntime", energy=35.0, top1=71.9), _deit(batch=16, energy=44.0), _deit(size=384, energy=120.0, top1=73.0)]


def test_cases_that_differ_only_by_variant_batch_or_size_are_named_apart(tmp_path):
    # issue 29: every point of the plot was "deit_tiny_patch16_224.fb_in1k", and "Rank moves
    # most ... deit_tiny_patch16_224.fb_in1k (3 -> 1), deit_tiny_patch16_224.fb_in1k (3 -> 1)"
    from pytest_e3p.report.labels import case_labels

    labels = case_labels(FOUR)
    fig, texts, key = accuracy_energy_figure(FOUR, [0, 1, 2], "t", labels)
    names = [t.get_text() for t in texts]
    assert key == [] and len(set(names)) == 4 and "deit_tiny_patch16_224 onnxruntime b64 224px" in names
    text = write_report([results_file(FOUR)], tmp_path).read_text()
    theory = text.split("#### Theory against device")[1].split("\n\n")[1]
    rows = [line.split("|")[1].strip() for line in theory.splitlines()[2:]]
    assert sorted(rows) == sorted(labels.values())


def test_labels_of_13_models_crowded_together_do_not_overlap():
    # 12 small models within 10 mJ and a point of each other, and vit_small at 425 mJ squeezing
    # them into a corner of the axis (the newcomer's 13-model run): the old 8 fixed offsets ran out
    # and piled 3 pairs of names on each other
    names = ["deit_tiny_patch16_224", "levit_128s", "levit_conv_192", "mobilevit_xxs", "efficientvit_m0", "tiny_vit_5m_224"]
    names += ["edgenext_xx_small", "fastvit_t8", "repvit_m0_9", "mobilevitv2_050", "efficientformerv2_s0", "pvt_v2_b0"]
    cases = [ranked_case(n, "cpu", "imagenet", 20.0 + 0.8 * i, 72.0 + 0.3 * (i % 4), 60.0) for i, n in enumerate(names)]
    names.append("vit_small_patch16_224")
    cases.append(ranked_case(names[-1], "cpu", "imagenet", 425.0, 81.4, 55.0))
    fig, texts, key = accuracy_energy_figure(cases, [0], "13 models", {c.case_id: c.case_id.split("-")[0] for c in cases})
    assert len(texts) == 13
    boxes = _extents(texts)
    frame = fig.axes[0].get_window_extent(fig.canvas.get_renderer())
    legend = fig.axes[0].get_legend().get_window_extent(fig.canvas.get_renderer())
    for i, a in enumerate(boxes):
        assert not a.overlaps(legend)
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)
    shown = {t.get_text() for t in texts} | {k.split(": ", 1)[1] for k in key}
    assert set(names) <= shown  # every model is named: beside its point, or by number in the key


def _variant_pair():
    fp32 = _deit(energy=40.0)
    onnx = _deit("onnxruntime", energy=20.0, top1=72.0)
    onnx.top1_source = fp32.top1_source = "unavailable"
    onnx.agreement_top1_pct, onnx.max_rel_logit_error = 99.0, 0.001
    # pass values fp32 47 / 19 / 46, onnxruntime 43 / 17 / 18 (issue 29): the medians say -61 %,
    # within each pass 0.91, 0.89, 0.39
    onnx.vs_reference = VsReference(fp32.case_id, 3, 0.89, 0.39, 0.91, 0.89, 0.39, 0.91, False)
    return fp32, onnx


def test_the_variants_plot_has_the_per_pass_spread_as_error_bars(tmp_path):
    import matplotlib.pyplot as plt

    fp32, onnx = _variant_pair()
    figures = []
    real_save = plt.Figure.savefig
    plt.Figure.savefig = lambda self, *a, **k: (figures.append(self), real_save(self, *a, **k))[1]
    try:
        assert plot_variants([fp32, onnx], tmp_path / "v.png")
    finally:
        plt.Figure.savefig = real_save
    ax = figures[0].axes[0]
    (bar,) = [seg for coll in ax.collections for seg in coll.get_segments()]
    ys = sorted(y for _, y in bar)
    assert ys == pytest.approx([9.0, 61.0])  # saved 1 - 0.91 ... 1 - 0.39, in percent
    assert "per-pass" in ax.get_ylabel()


def test_the_variants_table_marks_a_change_within_the_noise(tmp_path):
    fp32, onnx = _variant_pair()
    onnx.vs_reference = VsReference(fp32.case_id, 3, 0.95, 0.85, 1.04, 0.95, 0.85, 1.04, True)
    text = write_report([results_file([fp32, onnx])], tmp_path).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| onnxruntime"))
    assert "~ [-15.0%, +4.0%]" in row and "-50.0%" not in row


def test_a_skipped_case_is_in_the_report_with_its_reason(tmp_path):
    # the README's example: prune-heads-25 on deit_tiny removes no head (issue 29)
    skipped = _deit("prune-heads-25", energy=None)
    skipped.status, skipped.reason = Status.SKIPPED, "removes no head of 3 per block; it needs P >= 34"
    skipped.energy_mj_per_image = skipped.top1 = skipped.sam = None
    text = write_report([results_file([_deit(), skipped])], tmp_path).read_text()
    section = text.split("### Asked for, not run (1)")[1]
    row = next(line for line in section.splitlines() if "prune-heads-25" in line)
    assert "| skipped" in row and "it needs P &gt;= 34" in row  # markdown_cell escapes ">"


def _sustained_record():
    data = {"requested_s": 60.0, "duration_s": 60.0, "window_s": 10.0, "windows": [], "images": 600, "sensor": "nvml-counter"}
    data.update(energy_kind="measured", thermal=False, drift_span_s=60.0, throttled_windows=0)
    return SustainedRecord.from_dict(data)


def test_every_png_in_the_report_folder_is_linked_from_report_md(tmp_path):
    fp32, onnx = _variant_pair()
    onnx.top1_source = fp32.top1_source = "measured"
    cases = [fp32, onnx, *(ranked_case(m, "cpu", "imagenet", e, t, n) for m, e, t, n in (("a", 30.0, 75.0, 70.0), ("b", 60.0, 80.0, 65.0)))]
    fp32.sustained = _sustained_record()
    # the session writes the sustained plot into the report folder before the report (run/session.py)
    from pytest_e3p.hardware.sensors.base import SensorInfo

    sensor = SensorInfo(name="nvml-counter", kind="measured", boundary="GPU board", unit="mJ", update_period_s=0.1)
    figure(SustainedRun(_windows([29.3] * 6, [17.7] * 6), 1.0, 6.0, sensor=sensor)).savefig(tmp_path / sustained_plot_name(fp32))
    text = write_report([results_file(cases)], tmp_path).read_text()
    linked = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text))
    pngs = {p.name for p in tmp_path.glob("*.png")}
    assert len(pngs) == 3 and pngs == linked  # accuracy-energy, variants, sustained
    assert "## Sustained runs" in text


def test_a_sustained_plot_elsewhere_is_linked_where_it_is_or_said_where(tmp_path):
    c = _deit()
    c.sustained = _sustained_record()
    beside = tmp_path / "results"
    beside.mkdir()
    (beside / sustained_plot_name(c)).write_bytes(b"\x89PNG\r\n\x1a\n")
    rf = results_file([c], source=str(beside / "results.json"))
    text = write_report([rf], tmp_path / "rep").read_text()
    assert f"](../results/{sustained_plot_name(c)})" in text
    rf.source = ""
    text = write_report([rf], tmp_path / "rep2").read_text()
    assert "is not in this folder: the run writes it into its --e3p-report folder" in text


def test_the_report_links_the_sustained_plot_the_session_wrote(tmp_path):
    # run/session.py writes the sustained plots into the report folder before the report is
    # written (run_plugin.pytest_sessionfinish): the report must find each under the same name
    from types import SimpleNamespace

    from pytest_e3p.hardware.sensors.base import SensorInfo
    from pytest_e3p.run.session import E3PSession

    c = _deit()
    c.sustained = _sustained_record()
    sensor = SensorInfo(name="nvml-counter", kind="measured", boundary="GPU board", unit="mJ", update_period_s=0.1)
    run = SustainedRun(_windows([29.3] * 6, [17.7] * 6), 1.0, 6.0, sensor=sensor)
    fake = SimpleNamespace(sustained_runs={c.case_id: run}, options=SimpleNamespace(report=tmp_path, results=None), lost=str)
    (line,) = E3PSession._sustained_plots(fake)
    assert line.startswith("sustained plots written: ")
    text = write_report([results_file([c])], tmp_path).read_text()
    assert f"![Sustained run of {c.case_id}]({sustained_plot_name(c)})" in text
    assert {p.name for p in tmp_path.glob("sustained_*.png")} == {sustained_plot_name(c)}


def test_a_skipped_variant_is_in_its_models_variants_table_not_a_table_of_its_own():
    """A skipped case has no energy kind (status skipped, energy unavailable): it used to open a table
    of its own saying "no fp32 case of this model in the run" beside the model's real table."""
    from pytest_e3p.report.variants import variants_tables

    skipped = _deit("prune-heads-25", energy=None)
    skipped.status, skipped.reason = Status.SKIPPED, "removes no head of 3 per block; it needs P >= 34"
    skipped.energy_mj_per_image, skipped.energy_kind = None, "unavailable"
    fp32, onnx = _variant_pair()
    tables = variants_tables([fp32, onnx, skipped])
    assert len(tables) == 1
    _title, table, notes = tables[0]
    assert "prune-heads-25 (skipped)" in table and "onnxruntime" in table
    assert not any("no fp32 case" in n for n in notes)
