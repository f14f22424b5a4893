"""scripts/check_readme_examples.py: which README lines it runs, and that it fails where a user would
meet a traceback or a skip nobody meant (issue 29: the variants example asked for a case that was
skipped, the reason visible only with -rs). The README's own runs are not made here (minutes each);
run the script for them."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("check_readme_examples", ROOT / "scripts/check_readme_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # reads the README the user reads; cheap, but tied to its text
def test_the_readme_commands_found_are_the_pytest_and_pytest_e3p_lines_of_its_example_blocks():
    script = load_script()
    found = script.find_examples((ROOT / "README.md").read_text(encoding="utf-8"))
    commands = [" ".join(e.argv) for e in found]
    # the install line's pytest run, after `&&`, and the suite's own tests (listed, not run)
    assert "pytest benchmarks/ --device cpu" in commands and "pytest tests/ -q" in commands
    assert [e.kind for e in found if e.argv[:2] == ["pytest", "tests/"]] == ["suite"]
    # every feature's example, the comment after `#` left out
    assert "pytest benchmarks/ --device tx2" in commands
    assert any(c.startswith("pytest benchmarks/ --device cpu --e3p-models deit_tiny_patch16_224 --e3p-variants") for c in commands)
    for command in ("screen", "sensors", "compare", "report", "finetune", "history", "dashboard", "doctor"):
        assert any(c.startswith(f"python -m pytest_e3p {command}") for c in commands), command
    # the Python example block and pip lines are no commands; nothing is found twice
    assert not any("e3p.measure" in c or c.startswith("pip") for c in commands)
    assert len(found) == len({(e.line_no, " ".join(e.argv)) for e in found})
    # what a run here changes, said: a board this machine lacks runs on the CPU
    tx2 = next(e for e in found if e.argv == ["pytest", "benchmarks/", "--device", "tx2"])
    argv, notes = script.prepared(tx2, quick=True)
    if not script.has_device("tx2"):
        assert argv[argv.index("--device") + 1] == "cpu" and "--device tx2 -> cpu (no tx2 on this machine)" in notes
    assert "--e3p-weights=random" in argv and "--e3p-models=test_vit" in argv


def test_the_marked_skip_comment_is_read_per_line():
    script = load_script()
    text = "Text\n\n    pytest benchmarks/ --e3p-variants prune-heads-25   # shows a skip: removes no head\n    pytest benchmarks/ --device cpu\n"
    shows, plain = script.find_examples(text)
    assert shows.shows_skip and not plain.shows_skip


def test_a_readme_whose_example_raises_a_traceback_fails_the_script(tmp_path, capsys):
    script = load_script()
    readme = tmp_path / "README.md"
    # indented and fenced blocks both hold examples
    readme.write_text("# x\n\n    python -m pytest_e3p doctor --section nonsense\n\n```\npython -m pytest_e3p screen --models candidates\n```\n")
    assert script.main([str(readme), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "python -m pytest_e3p doctor --section nonsense" in listed and "python -m pytest_e3p screen --models candidates" in listed

    readme.write_text("# x\n\n    python -m pytest_e3p sensors --window-s 0.01   # a healthy line\n    python -m pytest_e3p crash\n")
    out = tmp_path / "fake"
    out.mkdir()
    # a stand-in for the package on PYTHONPATH whose command raises, as a bug would
    (out / "pytest_e3p").mkdir()
    (out / "pytest_e3p/__init__.py").write_text("")
    (out / "pytest_e3p/__main__.py").write_text("import sys\nif sys.argv[1:] == ['crash']:\n    raise RuntimeError('boom')\nprint('fine')\n")
    script.ROOT = out  # its PYTHONPATH, benchmarks/ and conftest.py come from here
    (out / "benchmarks").mkdir()
    (out / "conftest.py").write_text("")
    assert script.main([str(readme)]) == 1
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "a traceback: RuntimeError: boom" in printed
    assert printed.count("ok ") >= 1  # the healthy line passed
