import pytest

from pytest_e3p.models.screening import Stage1Row, complexity_of, screen, stage1_row
from pytest_e3p.models.zoo import parse_model


def row(name, top1, params, gmacs):
    return Stage1Row(name, params, gmacs, top1, None)


def test_pareto_screening_keeps_the_front_and_says_who_dominates_the_rest():
    rows = screen(
        [
            row("a", 80.0, 10.0, 1.0),
            row("b", 79.0, 12.0, 1.5),  # worse than a everywhere
            row("c", 85.0, 30.0, 4.0),  # best accuracy
            row("d", 70.0, 3.0, 0.2),  # smallest
            Stage1Row("e", 5.0, 1.0, None, None),  # no reference accuracy
        ],
        keep=["x"],
    )
    verdict = {r.model: (r.kept, r.why) for r in rows}
    assert verdict["a"] == (True, "on the Pareto front")
    assert verdict["b"] == (False, "dominated by a")
    assert verdict["c"][0] and verdict["d"][0]
    assert verdict["e"] == (True, "no reference accuracy: not screened")


def test_keep_list_and_objectives():
    rows = [row("a", 80.0, 10.0, 1.0), row("b", 79.0, 12.0, 1.5)]
    assert screen(rows, keep=["b"])[1].why == "kept by the keep-list"
    # on accuracy alone only the most accurate stays
    rows = [row("a", 80.0, 10.0, 1.0), row("b", 79.0, 1.0, 0.1)]
    assert [r.kept for r in screen(rows, objectives=["top1"])] == [True, False]


def test_stage1_counts_the_imagenet_model_even_when_the_default_tag_has_21k_classes():
    cache = {}
    cx = complexity_of(parse_model("tiny_vit_5m_224.in1k"), cache)  # default tag: dist_in22k (21,841 classes)
    assert cx.params_m == pytest.approx(5.39, abs=0.01)
    assert len(cache) == 1
    again = complexity_of(parse_model("tiny_vit_5m_224.dist_in22k_ft_in1k"), cache)  # same arch: from the cache
    assert again == cx
    r = stage1_row(parse_model("tiny_vit_5m_224.dist_in22k_ft_in1k"), cx)
    assert r.top1_ref == 80.874 and r.netscore == pytest.approx(67.9, abs=0.15)  # reference NetScore: 67.9 from timm's rounded MACs
