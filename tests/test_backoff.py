"""Backoff maths: seeded randomness, no threads, no sleeping."""
import random

import pytest

from hotreload.backoff import count_failure, delay


def test_delays_grow_by_factor_until_the_cap():
    delays = [delay(n, initial=0.5, factor=2.0, cap=30.0, jitter=0.0) for n in range(1, 10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_huge_attempt_number_is_capped_not_an_overflow():
    assert delay(10_000, initial=0.5, factor=2.0, cap=30.0, jitter=0.0) == 30.0


@pytest.mark.parametrize("n", [1, 4, 12])
def test_jitter_scales_within_one_minus_jitter_and_one(n):
    rng = random.Random(42)
    base = delay(n, 0.5, 2.0, 30.0, jitter=0.0)
    samples = [delay(n, 0.5, 2.0, 30.0, jitter=0.5, rand=rng.random) for _ in range(2000)]
    assert all(base * 0.5 <= d <= base for d in samples)
    # spread over the whole range, so that workers crashing together restart apart
    assert min(samples) < base * 0.55 and max(samples) > base * 0.95


def test_rand_extremes_map_to_the_ends_of_the_range():
    assert delay(3, 1.0, 2.0, 30.0, jitter=0.25, rand=lambda: 0.0) == 4.0
    assert delay(3, 1.0, 2.0, 30.0, jitter=0.25, rand=lambda: 1.0) == 3.0


def test_failure_count_grows_and_resets_after_a_stable_run():
    assert count_failure(0, ran_for=0.1, stable_after=30.0) == 1
    assert count_failure(4, ran_for=29.9, stable_after=30.0) == 5
    assert count_failure(9, ran_for=30.1, stable_after=30.0) == 1
