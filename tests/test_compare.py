"""compare.py: bands and verdicts against textbook values (no scipy here: the t distribution is ours)."""

from __future__ import annotations

import math

import pytest

from nnlab import compare


@pytest.mark.parametrize("df, t", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (1000, 1.9623)])
def test_t_quantiles_are_the_tables(df, t):
    assert compare.t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)


def test_welch_against_a_worked_example():
    assert compare.welch_p([1, 2, 3, 4, 5], [3, 4, 5, 6, 7]) == pytest.approx(0.0805, abs=1e-4)  # t = -2, df = 8
    # unequal variances: t = -2.074, df = 10.21 (Welch-Satterthwaite); p as scipy.stats.ttest_ind(equal_var=False) gives it
    a, b = (
        [19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0],
        [28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7],
    )
    assert compare.welch_p(a, b) == pytest.approx(0.0642800, abs=1e-6)
    assert compare.welch_p([0.9, 0.99, 0.93, 0.97], [0.95, 0.96, 0.97, 0.96]) == pytest.approx(0.5832108, abs=1e-6)
    assert compare.welch_p([1.0], [2.0, 3.0]) == 1.0 and compare.welch_p([1, 1], [2, 2]) == 0.0


def test_bands_and_verdicts():
    b = compare.band([0.8, 0.9, 1.0, float("nan")])
    assert (b.mean, b.n) == (pytest.approx(0.9), 3) and b.half == pytest.approx(4.3027 * 0.1 / math.sqrt(3), rel=1e-4)
    assert compare.band([0.5]).half == math.inf and compare.band([None, float("inf")]) is None
    best = [0.95, 0.96, 0.97, 0.96]
    assert compare.verdict(best, best, True, is_best=True) == "best"
    assert compare.verdict([0.50, 0.51, 0.49, 0.50], best, True, is_best=False) == "worse"
    assert compare.verdict([0.90, 0.99, 0.93, 0.97], best, True, is_best=False) == "not distinguishable with 4 seeds"
    assert compare.verdict([0.5], best, True, is_best=False) == "not distinguishable with 1 seed"
    assert compare.verdict([0.9, 0.9], [0.3, 0.3], False, is_best=False) == "worse"  # a loss: higher is worse
    assert compare.setting_of({"trainer.seed": "3", "activation": "relu"}) == (("activation", "relu"),)
    runs = [
        {"trainer.seed": "0", "init": "zeros", "trainer.epochs": "3"},
        {"trainer.seed": "1", "init": "he_normal", "trainer.epochs": "3"},
        {"data.source.seed": "2", "init": "zeros", "trainer.epochs": "3"},
    ]
    assert compare.setting_names(runs) == ["init=zeros", "init=he_normal", "init=zeros"]  # what differs, seeds aside
    assert compare.setting_names(runs[:1]) == [""]
