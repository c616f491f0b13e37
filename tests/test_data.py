"""Data loading: the verified download (against a real local HTTP server), IDX parsing, binarization, digits."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MNIST_DIR  # noqa: E402

from iwae import data as data_mod
from iwae.data import (
    DATA_DIR_ENV,
    MNIST_SHA256,
    DataError,
    binarize_fixed,
    default_data_dir,
    download_file,
    ensure_file,
    load_digits,
    read_idx,
)

NAME = "t10k-labels-idx1-ubyte.gz"  # the smallest real MNIST file (4.5 kB)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the full length of the file, sends half of it, then closes the connection."""

    payload = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def _start_server(handler) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _stop_server(server, thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """urllib honours *_proxy variables: make sure 127.0.0.1 is reached directly."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def served(tmp_path):
    """A local HTTP server on 127.0.0.1 serving a folder; yields (mirror URL, served folder)."""
    root = tmp_path / "served"
    root.mkdir()
    server, thread = _start_server(functools.partial(_QuietHandler, directory=str(root)))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        _stop_server(server, thread)


@pytest.fixture
def dead_mirror():
    """A port on 127.0.0.1 with a bound socket that does not listen: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _corrupt_copy(src: Path, dst: Path) -> None:
    raw = bytearray(src.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    dst.write_bytes(bytes(raw))


# --- download_file / ensure_file against a real server -----------------------------------------------------


def test_shared_label_file_matches_published_hash():
    assert _sha256(MNIST_DIR / NAME) == MNIST_SHA256[NAME]


def test_download_good_file_lands_verified_and_leaves_no_temp_files(served, tmp_path):
    mirror, root = served
    shutil.copy(MNIST_DIR / NAME, root / NAME)
    dest = tmp_path / "dest"
    path = download_file(NAME, dest, mirrors=(mirror,))
    assert path == dest / NAME
    assert _sha256(path) == MNIST_SHA256[NAME]
    assert sorted(p.name for p in dest.iterdir()) == [NAME]  # no .part or other temp file


def test_ensure_file_downloads_when_missing(served, tmp_path):
    mirror, root = served
    shutil.copy(MNIST_DIR / NAME, root / NAME)
    dest = tmp_path / "dest"
    path = ensure_file(NAME, dest, download=True, mirrors=(mirror,))
    assert path == dest / NAME and _sha256(path) == MNIST_SHA256[NAME]
    assert sorted(p.name for p in dest.iterdir()) == [NAME]
    labels = read_idx(path)
    assert labels.shape == (10000,)


def test_download_corrupted_file_is_rejected_and_removed(served, tmp_path):
    mirror, root = served
    _corrupt_copy(MNIST_DIR / NAME, root / NAME)
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        download_file(NAME, dest, mirrors=(mirror,))
    msg = str(info.value)
    assert "sha256" in msg and MNIST_SHA256[NAME] in msg
    assert not (dest / NAME).exists()
    assert list(dest.glob("*.part")) == [] and list(dest.iterdir()) == []


def test_download_falls_back_to_next_mirror(served, tmp_path, dead_mirror):
    """A refused mirror, then a mirror with a corrupt copy (another server), then a good one: the good one wins."""
    mirror, root = served
    shutil.copy(MNIST_DIR / NAME, root / NAME)
    bad_root = tmp_path / "bad"
    bad_root.mkdir()
    _corrupt_copy(MNIST_DIR / NAME, bad_root / NAME)
    server, thread = _start_server(functools.partial(_QuietHandler, directory=str(bad_root)))
    try:
        bad_mirror = f"http://127.0.0.1:{server.server_address[1]}/"
        dest = tmp_path / "dest"
        path = download_file(NAME, dest, mirrors=(dead_mirror, bad_mirror, mirror))
    finally:
        _stop_server(server, thread)
    assert _sha256(path) == MNIST_SHA256[NAME]
    assert sorted(p.name for p in dest.iterdir()) == [NAME]


def test_download_404_is_a_data_error(served, tmp_path):
    mirror, _ = served  # serves an empty folder
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        download_file(NAME, dest, mirrors=(mirror,))
    assert "404" in str(info.value)
    assert list(dest.iterdir()) == []


def test_download_truncated_transfer_is_a_data_error(tmp_path):
    """The server promises the full Content-Length, sends half and hangs up: a DataError, nothing left behind."""
    handler = type("H", (_TruncatingHandler,), {"payload": (MNIST_DIR / NAME).read_bytes()})
    server, thread = _start_server(handler)
    dest = tmp_path / "dest"
    try:
        with pytest.raises(DataError):
            download_file(NAME, dest, mirrors=(f"http://127.0.0.1:{server.server_address[1]}/",), timeout=10)
    finally:
        _stop_server(server, thread)
    assert list(dest.iterdir()) == []


def test_download_server_gone_names_the_offline_options(tmp_path, dead_mirror):
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        download_file(NAME, dest, mirrors=(dead_mirror,), timeout=5)
    msg = str(info.value)
    assert "--data-dir" in msg and DATA_DIR_ENV in msg and dead_mirror + NAME in msg
    assert list(dest.iterdir()) == []


def test_download_server_shut_down_names_the_offline_options(tmp_path):
    server, thread = _start_server(_QuietHandler)
    port = server.server_address[1]
    _stop_server(server, thread)
    with pytest.raises(DataError) as info:
        download_file(NAME, tmp_path / "dest", mirrors=(f"http://127.0.0.1:{port}/",), timeout=5)
    assert "--data-dir" in str(info.value) and DATA_DIR_ENV in str(info.value)


def test_ensure_file_rejects_existing_corrupt_file_without_downloading(tmp_path, served):
    mirror, root = served
    shutil.copy(MNIST_DIR / NAME, root / NAME)  # a good copy is available, but must not be fetched silently
    dest = tmp_path / "dest"
    dest.mkdir()
    _corrupt_copy(MNIST_DIR / NAME, dest / NAME)
    before = (dest / NAME).read_bytes()
    with pytest.raises(DataError) as info:
        ensure_file(NAME, dest, download=True, mirrors=(mirror,))
    assert "sha256" in str(info.value) and str(dest / NAME) in str(info.value)
    assert (dest / NAME).read_bytes() == before  # neither used nor replaced behind the user's back


def test_ensure_file_uses_existing_good_file_without_network(tmp_path, dead_mirror):
    dest = tmp_path / "dest"
    dest.mkdir()
    shutil.copy(MNIST_DIR / NAME, dest / NAME)
    assert ensure_file(NAME, dest, download=True, mirrors=(dead_mirror,)) == dest / NAME


def test_ensure_file_missing_without_download_names_flag_and_env(tmp_path, dead_mirror):
    with pytest.raises(DataError) as info:
        ensure_file(NAME, tmp_path, download=False, mirrors=(dead_mirror,))
    msg = str(info.value)
    assert "--data-dir" in msg and DATA_DIR_ENV in msg and NAME in msg
    assert not (tmp_path / NAME).exists()


# --- IDX files -----------------------------------------------------------------------------------------------


def test_read_idx_real_test_labels():
    labels = read_idx(MNIST_DIR / NAME)
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert labels.min() == 0 and labels.max() == 9
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000 and (counts > 800).all()  # every class present, roughly balanced
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first MNIST test labels


def _write_gz(path: Path, raw: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(raw)
    return path


def test_read_idx_round_trip_and_malformed(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    good = _write_gz(tmp_path / "good.gz", header + arr.tobytes())
    np.testing.assert_array_equal(read_idx(good), arr)
    with pytest.raises(DataError):
        read_idx(_write_gz(tmp_path / "short.gz", header + arr.tobytes()[:-1]))  # header/size mismatch
    with pytest.raises(DataError):
        read_idx(_write_gz(tmp_path / "float.gz", bytes([0, 0, 0x0D, 1]) + (4).to_bytes(4, "big") + b"\0" * 16))


def test_load_mnist_test_split_from_shared_dir():
    test = data_mod.load_mnist("test", MNIST_DIR, download=False)
    assert test.images.shape == (10000, 784) and test.side == 28
    assert test.images.dtype == torch.float32
    assert test.images.min() == 0.0 and test.images.max() == 1.0
    assert test.labels.tolist()[:3] == [7, 2, 1]


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
