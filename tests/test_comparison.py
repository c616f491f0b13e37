"""Paired differences and seed noise (iwae/comparison.py) against hand-computed values."""

import math

import numpy as np
import pytest

from iwae.comparison import paired_difference, seed_noise


def test_paired_difference_is_mean_and_standard_error_of_per_image_gaps():
    better = np.array([-90.0, -100.0, -110.0, -95.0])
    worse = better - np.array([1.0, 2.0, 3.0, 2.0])  # worse by 1, 2, 3, 2 nats
    p = paired_difference(better, worse, "a", "b", "exact")
    assert p.mean == pytest.approx(2.0)
    assert p.se == pytest.approx(np.std([1, 2, 3, 2], ddof=1) / 2)
    assert p.z == pytest.approx(2.0 / p.se)
    # pairing removes the image-to-image spread: shifting both by a large per-image offset changes nothing
    offset = np.array([50.0, -40.0, 7.0, 0.0])
    assert paired_difference(better + offset, worse + offset).se == pytest.approx(p.se)
    assert paired_difference(worse, better).mean == pytest.approx(-2.0)  # a reversed ordering is negative


def test_seed_noise_uses_the_same_images_for_every_seed():
    runs = [np.array([-100.0, -110.0, -999.0]), np.array([-102.0, -112.0]), np.array([-101.0, -111.0, -5.0])]
    s = seed_noise("vae-k1", "exact", runs)
    assert s.n_images == 2  # the third image is missing for one seed: it is left out for all
    assert s.nll_by_seed == (105.0, 107.0, 106.0)
    assert s.mean == pytest.approx(106.0) and s.sd == pytest.approx(1.0)
    assert math.isfinite(s.sd)
