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


def _write_per_image(folder, name, log_px):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{name}.per-image.npz", log_px_quadrature=np.asarray(log_px), **{"is": np.asarray(log_px) - 1})


def test_zoo_seed_noise_reads_seed_1_beside_the_models_and_the_others_from_the_seeds_folder(tmp_path):
    from explorer.results import seed_noise_note
    from iwae.comparison import SEEDS_FOLDER, largest_seed_sd, zoo_seed_noise

    _write_per_image(tmp_path, "vae-k1", [-100.0, -110.0])
    _write_per_image(tmp_path / SEEDS_FOLDER, "vae-k1-seed2", [-102.0, -112.0])
    _write_per_image(tmp_path / SEEDS_FOLDER, "vae-k1-seed3", [-101.0, -111.0])
    _write_per_image(tmp_path, "iwae-k5", [-90.0, -90.0])  # its seed 3 is missing: no noise claimed for it
    _write_per_image(tmp_path / SEEDS_FOLDER, "iwae-k5-seed2", [-91.0, -91.0])
    noise = zoo_seed_noise(tmp_path)
    assert set(noise) == {("vae-k1", "exact"), ("vae-k1", "is")}
    assert noise[("vae-k1", "exact")].nll_by_seed == (105.0, 107.0, 106.0)
    assert noise[("vae-k1", "is")].nll_by_seed == (106.0, 108.0, 107.0)
    assert largest_seed_sd(noise, "exact") == pytest.approx(1.0)
    assert math.isnan(largest_seed_sd({}, "exact"))
    note = seed_noise_note(noise)
    assert "vae-k1: 1.00 (quadrature), 1.00 (IS)" in note and "beyond twice the larger sd (2.00 nats" in note
    assert "iwae-k5" not in note and seed_noise_note({}) is None
