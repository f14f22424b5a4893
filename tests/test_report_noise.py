"""Rankings and reports claim no order that the measured spread does not support."""

import dataclasses

from fakes.results import TX2, case_result, file_of

from pytest_e3p.metrics import noise_ranks
from pytest_e3p.report.answer import energy_interval
from pytest_e3p.report.markdown import energy_error_bars, write_report
from pytest_e3p.report.table3 import sd_error_bars, table3_rows
from pytest_e3p.report.terminal import ranking_tables


def test_values_within_each_others_noise_share_a_rank():
    # 100 +/- 3 and 102 +/- 3 overlap; 120 is clear of both
    assert noise_ranks([100.0, 102.0, 120.0], [3.0, 3.0, 3.0], higher_is_better=False) == [1, 1, 3]
    assert noise_ranks([100.0, 102.0, 120.0], [0.5, 0.5, 0.5], higher_is_better=False) == [1, 2, 3]
    assert noise_ranks([0.9, 0.5, 0.89], [0.02, 0.02, 0.02], higher_is_better=True) == [1, 3, 1]


def test_the_report_ties_models_the_spread_does_not_separate(tmp_path):
    # a (200 mJ) and vit_small (425 mJ) stay apart; a 60 % spread on every case ties them all
    noisy = [dataclasses.replace(c, energy_spread=0.6) for c in TX2]
    text = write_report([file_of(noisy, "tx2")], tmp_path / "rep").read_text()
    assert "share a rank: no order between them is claimed" in text
    assert "is not the best on tx2" not in text
    clean = write_report([file_of([dataclasses.replace(c, energy_spread=0.001) for c in TX2], "tx2")], tmp_path / "rep2").read_text()
    assert "share a rank" not in clean


def test_the_table_shows_each_cases_spread_and_marks_the_unstable():
    cases = [dataclasses.replace(TX2[0], energy_spread=0.012), dataclasses.replace(TX2[1], energy_spread=0.09, unstable=True)]
    ((_, table),) = ranking_tables(cases)
    assert "+/-1.2%" in table and "+/-9.0% unstable" in table


def test_the_answer_ties_by_the_same_band_the_reports_error_bars_draw():
    # one noise band for a case everywhere: the answer's tie and the plot's error bar must agree
    for passes in ([100.0, 100.0, 100.0], [80.0, 100.0, 125.0], [10.0, 100.0, 1000.0]):
        c = case_result(energy_mj_per_image=100.0, energy_mj_per_image_passes=passes, top1=70.0)
        band = energy_interval(c)
        assert band is not None and (band.low, band.high) == energy_error_bars(c)


def test_the_fig5_error_bars_never_reach_below_zero():
    # an inference sd wider than its mean (a disturbed pass): the bar stops at 0, above it is whole
    assert sd_error_bars([1.5, 10.0, None], [4.0, 2.0, 1.0]) == [[1.5, 2.0, 0.0], [4.0, 2.0, 1.0]]
    assert sd_error_bars([3.0], [None]) == [[0.0], [0.0]]


def test_table3_tells_one_model_at_two_sizes_apart():
    small = case_result(
        "edgevit_xxs-cpu-synthetic-224px", model="edgevit_xxs", protocol="edgevit", batch_size=1, top1=74.4, energy_mj_per_image=5.0, latency_ms_per_image=2.0
    )
    large = dataclasses.replace(small, case_id="edgevit_xxs-cpu-synthetic-256px", image_size=[3, 256, 256])
    headers, rows = table3_rows([small, large])
    assert [row[0] for row in rows] == ["edgevit_xxs 224px (EdgeViT)", "edgevit_xxs 256px (EdgeViT)"]
