import math

import pytest

from pytest_e3p.metrics import kendall_tau, netscore, noise_ranks, pareto_front, ranks, sam


def test_netscore_matches_hand_computation_and_the_reference_figures():
    # 20*log10(79.254^2 / (sqrt(9.10)*sqrt(0.53))) computed by hand: 69.13 (the reference NetScore, 69.1)
    assert netscore(79.254, 9.10, 0.53) == pytest.approx(69.13, abs=0.01)
    # DeiT-S: 79.856 %, 22.05 M, 4.61 GMACs -> 56.0
    assert netscore(79.856, 22.05, 4.61) == pytest.approx(56.0, abs=0.05)
    with pytest.raises(ValueError):
        netscore(0, 1, 1)


def test_sam_reproduces_the_papers_figures_and_is_undefined_at_or_below_1_mj():
    # the E3P paper fits this form: SAM5 1.72 at 0.975 and 365 mJ/img; 0.76 at 0.832 and 420 mJ/img
    assert sam(0.975, 365.0) == pytest.approx(5 * 0.975**5 / math.log10(365.0))
    assert round(sam(0.975, 365.0), 2) == 1.72
    assert round(sam(0.832, 420.0), 2) == 0.76
    assert sam(0.9, 1.0) is None and sam(0.9, 0.5) is None
    assert sam(0.9, 100.0, alpha=1) == pytest.approx(0.9 / 2)
    with pytest.raises(ValueError):
        sam(90.0, 100.0)  # percent instead of a fraction


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    # (accuracy up, energy down)
    points = [(80, 10), (82, 12), (79, 11), (85, 30), (82, 12)]
    front = pareto_front(points, [True, False])
    assert front == [0, 1, 3, 4]  # (79, 11) is dominated by (80, 10); equal points both stay


def test_ranks_and_kendall_tau():
    assert ranks([3.0, 1.0, 2.0], higher_is_better=True) == [1, 3, 2]
    assert ranks([3.0, 1.0, 2.0], higher_is_better=False) == [3, 1, 2]
    # ties share the lower (better) rank and the next value skips past them: 1, 2, 2, 4
    assert ranks([2.0, 1.0, 2.0, 3.0], higher_is_better=True) == [2, 4, 2, 1]
    assert ranks([2.0, 1.0, 2.0, 3.0], higher_is_better=False) == [2, 1, 2, 4]
    assert ranks([5.0, 5.0, 5.0, 1.0], higher_is_better=True) == [1, 1, 1, 4]  # not the average, 2
    assert ranks([], higher_is_better=True) == []
    assert all(type(r) is int for r in ranks([1.5, 0.5], higher_is_better=True))
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of 6: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 2], [2, 1]) is None


def test_noise_ranks_tie_values_whose_bands_overlap_the_head_of_their_rank():
    # energy, lower is better; bands +/- 1: 10 and 11.5 overlap (gap 1.5 < 2), 13 is clear of 10
    # (gap 3) though it overlaps 11.5: a rank is measured from its first value, so no chain forms
    assert noise_ranks([13.0, 10.0, 11.5, 20.0], [1.0, 1.0, 1.0, 1.0], higher_is_better=False) == [3, 1, 1, 4]
    # accuracy, higher is better: the wide band of 79 reaches 80, so they share rank 1
    assert noise_ranks([80.0, 79.0, 70.0], [0.1, 2.0, 0.1], higher_is_better=True) == [1, 1, 3]
    # no noise: plain ranks, ties included
    assert noise_ranks([3.0, 1.0, 3.0], [0.0, 0.0, 0.0], higher_is_better=True) == ranks([3.0, 1.0, 3.0], higher_is_better=True)
