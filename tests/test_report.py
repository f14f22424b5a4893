from fakes.results import RTX, TX2, file_of, ranked_case

from pytest_e3p.cli import main
from pytest_e3p.report.markdown import savings_line, write_report
from pytest_e3p.storage import results


def test_savings_line_is_computed_against_the_reference_model():
    # c uses 94 mJ; vit_small 425.53 mJ -> 1 - 94/425.53 = 77.9 %
    assert savings_line(TX2, "tx2", "vit_small_patch16_224") == "c uses 78% less energy per image than vit_small_patch16_224 on tx2"
    assert savings_line(RTX, "rtx3050", "vit_small_patch16_224") is None


def test_report_merges_devices_and_holds_the_right_numbers(tmp_path):
    path = write_report([file_of(TX2, "tx2"), file_of(RTX, "rtx3050")], tmp_path / "rep")
    text = path.read_text()
    assert "## Dataset: cifar10" in text and "### tx2: stage 2 ranking by SAM" in text and "### rtx3050" in text
    # tx2, by hand: NetScore ranks a1 b2 c3 vit4; energy ranks a2 b3 c1 vit4. Of the 6 pairs, a-c and
    # b-c are discordant: tau = (4 - 2) / 6. SAM ranks a1 b2 vit3 c4: only c-vit discordant: 4/6.
    assert "Kendall's tau, NetScore vs SAM: 0.67; NetScore vs energy: 0.33." in text
    assert "**Savings:** c uses 78% less energy per image than vit_small_patch16_224 on tx2." in text
    # Pareto front on tx2 (top-1 up, energy down): c (lowest energy), a (90 % at 200), b (highest top-1)
    assert "Pareto front (accuracy up, energy down): a, b, c\n" in text  # vit_small is dominated by b
    assert "### Across devices" in text and "The best model differs between devices." in text
    assert "The best NetScore model (a) is not the best on rtx3050 (b)." in text
    assert "is not the best on tx2" not in text  # there a leads both
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    assert pngs == ["accuracy_energy_rtx3050_cifar10.png", "accuracy_energy_tx2_cifar10.png"]
    assert (path.parent / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_markdown_still_comes_and_says_how(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    path = write_report([file_of(TX2, "tx2")], tmp_path)
    assert "pip install 'pytest-e3p[report]'" in path.read_text()
    assert not list(tmp_path.glob("*.png"))


def test_report_command_skips_a_foreign_file_and_reports_the_rest(tmp_path, capsys):
    good = tmp_path / "tx2.json"
    results.save(file_of(TX2, "tx2"), good)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"benchmarks": []}')
    rc = main(["report", str(good), str(foreign), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 1 and "skipped: " in captured.err and "not a pytest-e3p results file" in captured.err
    assert (tmp_path / "out" / "report.md").exists()
    assert main(["report", str(foreign), "--out", str(tmp_path / "o2")]) == 2


def test_jetson_rails_are_broken_down_beside_the_total(tmp_path):
    rails = [ranked_case("a", "tx2", "imagenet", 200.0, 90.0, 70.0)]
    rails[0].rails_mj_per_image = {"VDD_IN": 200.0, "VDD_SYS_GPU": 120.0, "VDD_SYS_CPU": 30.0}
    rails[0].total_rail = "VDD_IN"
    text = write_report([file_of(rails, "tx2")], tmp_path).read_text()
    assert "per-rail energy (mJ/img); the total used for SAM is VDD_IN" in text
    section = text.split("per-rail energy (mJ/img)")[1]
    header = next(l for l in section.splitlines() if "VDD_IN (total)" in l)
    row = next(l for l in section.splitlines() if l.startswith("| a.tag"))
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")]))
    assert cells["VDD_IN (total)"] == "200" and cells["VDD_SYS_GPU"] == "120" and cells["VDD_SYS_CPU"] == "30"


def test_the_accuracy_pass_is_reported_beside_the_steady_state(tmp_path):
    from pytest_e3p.report.terminal import eval_pass_table

    a = ranked_case("a", "rtx3050", "imagenet", 200.0, 90.0, 70.0)  # steady: 1 ms and 200 mJ per image
    a.eval_images, a.eval_duration_s, a.eval_energy_mj, a.eval_subset = 1000, 1.25, 250_000.0, "1000 of 50000 images"
    b = ranked_case("b", "rtx3050", "imagenet", 300.0, 80.0, 60.0)  # no labelled pass: not in the table
    table = eval_pass_table([a, b])
    row = table.splitlines()[3]
    assert row.split()[:6] == ["a.tag", "1000", "(subset)", "1.25", "1.25", "1"]
    assert row.split()[6:] == ["0.80", "250", "200"]  # throughput ratio 1 / 1.25; energy per image
    assert len(table.splitlines()) == 4
    text = write_report([file_of([a, b], "rtx3050")], tmp_path).read_text()
    assert "*accuracy pass, data loading included*\n\n| model" in text


def test_random_weights_are_counted_over_all_cases_and_named_as_an_example():
    from pytest_e3p.report.terminal import footnotes

    a, b, c = (ranked_case(m, "cpu", "synthetic", 200.0, 80.0, 60.0) for m in ("a", "b", "c"))
    c.weights = "pretrained"
    for r in (a, b):
        r.weights, r.weights_detail = "random", f"pretrained weights for {r.model} are not in the Hugging Face cache"
    notes = [n for n in footnotes([a, b, c]) if n.startswith("weights:")]
    assert notes == ["weights: 2 of 3 case(s) ran with random weights, e.g. pretrained weights for a.tag are not in the Hugging Face cache"]
