
from pytest_e3p import results
from pytest_e3p.cli import main
from test_baseline import make_case, make_file


def test_compare_exit_codes(tmp_path, capsys):
    base, same, worse = tmp_path / "base.json", tmp_path / "same.json", tmp_path / "worse.json"
    results.save(make_file([make_case("a", 40)]), base)
    results.save(make_file([make_case("a", 40)]), same)
    results.save(make_file([make_case("a", 48)]), worse)
    assert main(["compare", str(base), str(same)]) == 0
    assert main(["compare", str(base), str(worse)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION a: energy 4" in out and "vs baseline 3" in out and "> tolerance 5%" in out
    assert main(["compare", str(base), str(worse), "--tolerance", "energy=25%"]) == 0
    assert main(["compare", str(base), str(worse), "--tolerance", "energy=lots"]) == 2
    (tmp_path / "bad.json").write_text("{")
    before = (tmp_path / "bad.json").read_text()
    assert main(["compare", str(tmp_path / "bad.json"), str(same)]) == 2
    assert (tmp_path / "bad.json").read_text() == before  # the baseline is left as it was
    assert "not valid JSON" in capsys.readouterr().err


def test_screen_command_prints_kept_and_dropped_with_why(capsys):
    assert main(["screen", "--models", "levit_128s,levit_192,levit_conv_192"]) == 0
    out = capsys.readouterr().out
    assert "levit_192.fb_dist_in1k" in out and "dominated by levit_conv_192.fb_dist_in1k" in out
    assert "kept 2 of 3" in out
    assert main(["screen", "--models", "not_a_model"]) == 2


def test_sensors_command_reports_each_backend_and_why_it_is_missing(capsys, sysfs_root):
    assert main(["sensors"]) == 0
    out = capsys.readouterr().out
    assert "CPU (RAPL): unavailable: no RAPL" in out
    assert "Jetson INA3221 rails: unavailable: no INA3221 rails" in out
    assert "NVIDIA GPU (NVML): unavailable" in out
    assert "labelled estimate" in out


def test_sensors_command_measures_the_update_period_of_a_real_layout(capsys, sysfs_root):
    from test_sensors_sysfs import tx2_tree

    tx2_tree(sysfs_root)
    assert main(["sensors", "--sample-hz", "100"]) == 0
    out = capsys.readouterr().out
    assert "Jetson INA3221 rails: jetson-ina3221, boundary: Jetson module input (VDD_IN), unit: mW" in out
    assert "sampled every 10.0 ms" in out
    rails = out.split("\n  rails: ")[1].split(";")[0].split(", ")
    assert sorted(rails) == sorted(["VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR", "VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"])
    assert "total: VDD_IN" in out
