"""Data loading: the verified download (against a real local HTTP server), IDX parsing, binarization, digits.

Every test here runs without the MNIST files: the download, checksum and reading tests use tiny IDX files the test
writes (``mnist_files.fake_mnist``), with their own sha256. The checks that need the real files (the published
hashes, the shipped test set regenerated from them) are marked ``real_mnist`` and skip where the files are not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mnist_files import (  # noqa: F401 (fixtures)
    REAL_MNIST_DIR,
    TruncatingHandler,
    corrupt_copy,
    dead_mirror,
    fake_mnist,
    first_test_digits,
    idx_bytes,
    needs_real_mnist,
    no_proxy,
    serve_folder,
    served,
    sha256_file,
    start_server,
    stop_server,
    url_of,
    write_gz,
)

from iwae import data as data_mod
from iwae import testset
from iwae.data import (
    DATA_DIR_ENV,
    MNIST_SHA256,
    SPLIT_FILES,
    DataError,
    binarize_fixed,
    default_data_dir,
    download_file,
    ensure_file,
    load_digits,
    read_idx,
)

NAME = "t10k-labels-idx1-ubyte.gz"  # the file the download tests fetch (fake: 5 labels)
PUBLISHED_SHA256 = dict(MNIST_SHA256)  # before any test swaps in a fake file's hash


# --- download_file / ensure_file against a real server -----------------------------------------------------


def test_fake_files_replace_the_published_hashes_only_inside_the_test(fake_mnist):
    assert set(fake_mnist.sha256) == set(PUBLISHED_SHA256)
    for name, digest in fake_mnist.sha256.items():
        assert MNIST_SHA256[name] == digest == sha256_file(fake_mnist.path(name)) != PUBLISHED_SHA256[name]


def test_download_good_file_lands_verified_and_leaves_no_temp_files(fake_mnist, served, tmp_path):
    mirror, root = served
    (root / NAME).write_bytes(fake_mnist.path(NAME).read_bytes())
    dest = tmp_path / "dest"
    path = download_file(NAME, dest, mirrors=(mirror,))
    assert path == dest / NAME
    assert sha256_file(path) == fake_mnist.sha256[NAME]
    assert sorted(p.name for p in dest.iterdir()) == [NAME]  # no .part or other temp file


def test_ensure_file_downloads_when_missing(fake_mnist, served, tmp_path):
    mirror, root = served
    (root / NAME).write_bytes(fake_mnist.path(NAME).read_bytes())
    dest = tmp_path / "dest"
    path = ensure_file(NAME, dest, download=True, mirrors=(mirror,))
    assert path == dest / NAME and sha256_file(path) == fake_mnist.sha256[NAME]
    assert sorted(p.name for p in dest.iterdir()) == [NAME]
    np.testing.assert_array_equal(read_idx(path), fake_mnist.labels["test"])


def test_load_mnist_downloads_all_missing_files_of_a_split(fake_mnist, served, tmp_path, monkeypatch):
    """Through the public entry point: an empty folder, the files on a mirror; then offline from the folder."""
    mirror, root = served
    for name in SPLIT_FILES["test"]:
        (root / name).write_bytes(fake_mnist.path(name).read_bytes())
    monkeypatch.setattr(data_mod, "MIRRORS", (mirror,))  # read when a download starts
    dest = tmp_path / "dest"
    test = data_mod.load_mnist("test", dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(SPLIT_FILES["test"])
    np.testing.assert_array_equal(test.labels.numpy(), fake_mnist.labels["test"])
    for name in SPLIT_FILES["test"]:
        (root / name).unlink()  # the mirror is gone: the verified local copies are used
    again = data_mod.load_mnist("test", dest, download=False)
    assert torch.equal(again.images, test.images)


def test_download_corrupted_file_is_rejected_and_removed(fake_mnist, served, tmp_path):
    mirror, root = served
    corrupt_copy(fake_mnist.path(NAME), root / NAME)
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        download_file(NAME, dest, mirrors=(mirror,))
    msg = str(info.value)
    assert "sha256" in msg and fake_mnist.sha256[NAME] in msg
    assert not (dest / NAME).exists()
    assert list(dest.glob("*.part")) == [] and list(dest.iterdir()) == []


def test_download_of_the_real_file_name_with_other_content_is_rejected(served, tmp_path):
    """With the published hashes in place, a file that is not the real MNIST file never lands."""
    mirror, root = served
    write_gz(root / NAME, idx_bytes(np.arange(10, dtype=np.uint8)))
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        download_file(NAME, dest, mirrors=(mirror,))
    assert PUBLISHED_SHA256[NAME] in str(info.value)
    assert list(dest.iterdir()) == []


def test_download_falls_back_to_next_mirror(fake_mnist, served, tmp_path, dead_mirror):
    """A refused mirror, then a mirror with a corrupt copy (another server), then a good one: the good one wins."""
    mirror, root = served
    (root / NAME).write_bytes(fake_mnist.path(NAME).read_bytes())
    bad_root = tmp_path / "bad"
    bad_root.mkdir()
    corrupt_copy(fake_mnist.path(NAME), bad_root / NAME)
    server, thread = serve_folder(bad_root)
    try:
        dest = tmp_path / "dest"
        path = download_file(NAME, dest, mirrors=(dead_mirror, url_of(server), mirror))
    finally:
        stop_server(server, thread)
    assert sha256_file(path) == fake_mnist.sha256[NAME]
    assert sorted(p.name for p in dest.iterdir()) == [NAME]


def test_download_404_is_a_data_error(served, tmp_path):
    mirror, _ = served  # serves an empty folder
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        download_file(NAME, dest, mirrors=(mirror,))
    assert "404" in str(info.value)
    assert list(dest.iterdir()) == []


def test_download_truncated_transfer_is_a_data_error(fake_mnist, tmp_path, no_proxy):
    """The server promises the full Content-Length, sends half and hangs up: a DataError, nothing left behind."""
    handler = type("H", (TruncatingHandler,), {"payload": fake_mnist.path("t10k-images-idx3-ubyte.gz").read_bytes()})
    server, thread = start_server(handler)
    dest = tmp_path / "dest"
    try:
        with pytest.raises(DataError):
            download_file("t10k-images-idx3-ubyte.gz", dest, mirrors=(url_of(server),), timeout=10)
    finally:
        stop_server(server, thread)
    assert list(dest.iterdir()) == []


def test_download_server_gone_names_the_offline_options(tmp_path, dead_mirror):
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        download_file(NAME, dest, mirrors=(dead_mirror,), timeout=5)
    msg = str(info.value)
    assert "--data-dir" in msg and DATA_DIR_ENV in msg and dead_mirror + NAME in msg
    assert list(dest.iterdir()) == []


def test_download_server_shut_down_names_the_offline_options(tmp_path, no_proxy):
    server, thread = serve_folder(tmp_path)
    mirror = url_of(server)
    stop_server(server, thread)
    with pytest.raises(DataError) as info:
        download_file(NAME, tmp_path / "dest", mirrors=(mirror,), timeout=5)
    assert "--data-dir" in str(info.value) and DATA_DIR_ENV in str(info.value)


def test_ensure_file_rejects_existing_corrupt_file_without_downloading(fake_mnist, tmp_path, served):
    mirror, root = served
    (root / NAME).write_bytes(fake_mnist.path(NAME).read_bytes())  # a good copy is available, but must not be fetched
    dest = tmp_path / "dest"
    dest.mkdir()
    corrupt_copy(fake_mnist.path(NAME), dest / NAME)
    before = (dest / NAME).read_bytes()
    with pytest.raises(DataError) as info:
        ensure_file(NAME, dest, download=True, mirrors=(mirror,))
    assert "sha256" in str(info.value) and str(dest / NAME) in str(info.value)
    assert (dest / NAME).read_bytes() == before  # neither used nor replaced behind the user's back


def test_ensure_file_uses_existing_good_file_without_network(fake_mnist, dead_mirror):
    assert ensure_file(NAME, fake_mnist.dir, download=True, mirrors=(dead_mirror,)) == fake_mnist.path(NAME)


def test_ensure_file_missing_without_download_names_flag_and_env(tmp_path, dead_mirror):
    with pytest.raises(DataError) as info:
        ensure_file(NAME, tmp_path, download=False, mirrors=(dead_mirror,))
    msg = str(info.value)
    assert "--data-dir" in msg and DATA_DIR_ENV in msg and NAME in msg
    assert not (tmp_path / NAME).exists()


# --- IDX files, load_mnist, the shipped test set -----------------------------------------------------------------


def test_read_idx_round_trip_and_malformed(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    assert idx_bytes(arr) == header + arr.tobytes()
    good = write_gz(tmp_path / "good.gz", header + arr.tobytes())
    np.testing.assert_array_equal(read_idx(good), arr)
    with pytest.raises(DataError):
        read_idx(write_gz(tmp_path / "short.gz", header + arr.tobytes()[:-1]))  # header/size mismatch
    with pytest.raises(DataError):
        read_idx(write_gz(tmp_path / "float.gz", bytes([0, 0, 0x0D, 1]) + (4).to_bytes(4, "big") + b"\0" * 16))


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_reads_a_split_as_grey_levels(fake_mnist, split):
    ds = data_mod.load_mnist(split, fake_mnist.dir, download=False)
    n = len(fake_mnist.labels[split])
    assert ds.images.shape == (n, 784) and ds.side == 28 and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == fake_mnist.labels[split].tolist()
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    expected = fake_mnist.images[split].reshape(n, 784).astype(np.float32) / 255.0
    np.testing.assert_array_equal(ds.images.numpy(), expected)


def test_load_mnist_from_default_dir_uses_env(fake_mnist, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(fake_mnist.dir))
    assert data_mod.load_dataset("mnist", "test", download=False).labels.tolist() == fake_mnist.labels["test"].tolist()


def test_test_set_build_save_load_round_trip(fake_mnist, tmp_path):
    """testset.build binarizes with the fixed seed; save packs the bits; load unpacks them and checks the digest."""
    images, labels = testset.build(fake_mnist.dir)
    grey = torch.from_numpy(fake_mnist.images["test"].reshape(-1, 784).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(images, binarize_fixed(grey).to(torch.uint8).numpy())
    np.testing.assert_array_equal(labels, fake_mnist.labels["test"])
    path = tmp_path / "test-set.npz"
    digest = testset.save(images, labels, path)
    loaded_images, loaded_labels = testset.load(path, expected_sha256=digest)
    np.testing.assert_array_equal(loaded_images.numpy(), images)
    assert loaded_images.dtype == torch.float32 and loaded_labels.tolist() == labels.tolist()
    bits, bit_labels = testset.load_bits(path, expected_sha256=digest)  # the app's copy: the bits, a quarter the size
    assert bits.dtype == np.uint8 and bits.shape == (len(labels), 784)
    np.testing.assert_array_equal(bits, images)
    assert bit_labels.tolist() == labels.tolist()
    with pytest.raises(testset.TestSetError):
        testset.load(path)  # not the recorded digest of the shipped file


# --- the real MNIST files, where they are --------------------------------------------------------------------------


@needs_real_mnist
def test_real_files_match_the_published_hashes():
    for name, digest in PUBLISHED_SHA256.items():
        assert sha256_file(REAL_MNIST_DIR / name) == digest, name
    sums = REAL_MNIST_DIR / "SHA256SUMS"
    if sums.is_file():  # the folder's own list agrees with the hashes in iwae/data.py
        rows = [line.split() for line in sums.read_text().splitlines() if line.strip()]
        listed = {name.lstrip("*"): digest for digest, name in rows}
        assert {name: listed.get(name) for name in PUBLISHED_SHA256} == PUBLISHED_SHA256


@needs_real_mnist
def test_read_idx_real_test_labels():
    labels = read_idx(REAL_MNIST_DIR / NAME)
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert labels.min() == 0 and labels.max() == 9
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000 and (counts > 800).all()  # every class present, roughly balanced
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first MNIST test labels


@needs_real_mnist
def test_load_mnist_real_splits():
    test = data_mod.load_mnist("test", REAL_MNIST_DIR, download=False)
    assert test.images.shape == (10000, 784) and test.side == 28
    assert test.images.dtype == torch.float32
    assert test.images.min() == 0.0 and test.images.max() == 1.0
    assert test.labels.tolist()[:3] == [7, 2, 1]
    train_labels = read_idx(ensure_file("train-labels-idx1-ubyte.gz", REAL_MNIST_DIR, download=False))
    assert train_labels.shape == (60000,)


@needs_real_mnist
def test_shipped_test_set_regenerates_from_the_real_files(tmp_path):
    images, labels = testset.build(REAL_MNIST_DIR)
    assert testset.save(images, labels, tmp_path / "regenerated.npz") == testset.PACKED_SHA256
    shipped_images, shipped_labels = testset.load()
    np.testing.assert_array_equal(shipped_images.numpy().astype(np.uint8), images)
    np.testing.assert_array_equal(shipped_labels.numpy(), labels)


@needs_real_mnist
def test_committed_digits_are_the_first_real_test_images():
    real = read_idx(REAL_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    digits = first_test_digits()
    np.testing.assert_array_equal(digits, real[: len(digits)])


# --- configuration, binarization, digits -------------------------------------------------------------------------


def test_default_data_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "mnist-here"))
    assert default_data_dir() == tmp_path / "mnist-here"
    monkeypatch.delenv(DATA_DIR_ENV)
    assert default_data_dir() != tmp_path / "mnist-here"


def test_binarize_fixed_is_reproducible_and_seeded():
    grey = torch.rand(200, 64, generator=torch.Generator().manual_seed(3))
    a, b = binarize_fixed(grey), binarize_fixed(grey)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, binarize_fixed(grey, seed=data_mod.TEST_BINARIZATION_SEED + 1))
    # Grey levels are probabilities: 0 and 1 stay put, and the mean is close to the grey mean.
    edge = torch.tensor([[0.0, 1.0] * 32])
    assert torch.equal(binarize_fixed(edge), edge)
    assert abs(a.mean().item() - grey.mean().item()) < 0.02


def test_load_digits_splits():
    train, test = load_digits("train"), load_digits("test")
    assert train.images.shape == (1500, 64) and test.images.shape == (297, 64)
    assert train.side == 8 and test.side == 8
    for ds in (train, test):
        assert ds.images.dtype == torch.float32
        assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
        assert ds.images.max() == 1.0  # 16/16 occurs: scaled by 16, not by 255
        assert set(ds.labels.unique().tolist()) == set(range(10))
    assert not torch.equal(train.images[:297], test.images)
