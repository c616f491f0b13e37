"""MNIST for the tests without the MNIST files: tiny IDX files written by the test, a local HTTP server, the
first real test digits as a small committed excerpt, and the marker for the checks that need the real files.

Import the fixtures explicitly in a test module (``from mnist_files import fake_mnist, served, ...``).

- ``fake_mnist``: the four MNIST file names in a temporary folder, each holding a few 28x28 images (or their
  labels), with their own sha256 put in place of the published ones (``iwae.data.MNIST_SHA256``) for the test.
- ``served`` / ``dead_mirror`` / ``start_server``: a real HTTP server on 127.0.0.1 (or a refused port) to download
  from; ``no_proxy`` makes urllib reach 127.0.0.1 directly.
- ``first_test_digits()``: the first 30 MNIST test images (grey levels) from ``tests/data/``, for tests that need
  real handwriting but not the MNIST files; a real-file check compares it with the MNIST file.
- ``needs_real_mnist``: marks a test ``real_mnist`` and skips it, with a one-line reason, where the real files are
  not found. The real files are looked for in ``$IWAE_DATA_DIR`` if set (only there), else in
  ``../shared/data/mnist`` beside the repository.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from iwae import data as data_mod

ROOT = Path(__file__).resolve().parents[1]

# --- the real MNIST files, where they are ---------------------------------------------------------------------


def _real_mnist_candidate() -> Path:
    env = os.environ.get(data_mod.DATA_DIR_ENV)
    return Path(env) if env else ROOT.parent / "shared" / "data" / "mnist"


REAL_MNIST_CANDIDATE = _real_mnist_candidate()
REAL_MNIST_DIR: Path | None = (
    REAL_MNIST_CANDIDATE if all((REAL_MNIST_CANDIDATE / n).is_file() for n in data_mod.MNIST_SHA256) else None
)
REAL_MNIST_REASON = (
    f"needs the real MNIST files: none in {REAL_MNIST_CANDIDATE} (set {data_mod.DATA_DIR_ENV} to a folder with them)"
)


def needs_real_mnist(test):
    """Marks ``test`` ``real_mnist``; skipped with a one-line reason where the real MNIST files are not found."""
    return pytest.mark.real_mnist(pytest.mark.skipif(REAL_MNIST_DIR is None, reason=REAL_MNIST_REASON)(test))


# --- IDX files --------------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file's content (not gzipped)."""
    array = np.asarray(array)
    assert array.dtype == np.uint8 and 1 <= array.ndim <= 255
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_gz(path: Path, raw: bytes) -> Path:
    """Gzip ``raw`` into ``path`` with a fixed header time, so the same content gives the same bytes and sha256."""
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw)
    return path


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    return write_gz(path, idx_bytes(array))


def sha256_bytes(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


def corrupt_copy(src: Path, dst: Path) -> None:
    """``src`` with one byte in the middle flipped."""
    raw = bytearray(Path(src).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    Path(dst).write_bytes(bytes(raw))


# --- a fake MNIST folder -----------------------------------------------------------------------------------------

FAKE_COUNTS = {"train": 8, "test": 5}


@dataclass
class FakeMnist:
    dir: Path
    images: dict[str, np.ndarray]  # split -> uint8 (N, 28, 28)
    labels: dict[str, np.ndarray]  # split -> uint8 (N,)
    sha256: dict[str, str]  # file name -> sha256 of the gzipped file

    def path(self, name: str) -> Path:
        return self.dir / name


def write_fake_mnist(folder: Path, seed: int = 0) -> FakeMnist:
    """The four MNIST file names in ``folder``, with a few random 28x28 images each (grey levels 0 and 255 occur)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, labels, digests = {}, {}, {}
    for split, (image_file, label_file) in data_mod.SPLIT_FILES.items():
        n = FAKE_COUNTS[split]
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        imgs[:, 0, 0], imgs[:, 0, 1] = 0, 255
        labs = rng.permutation(10)[:n].astype(np.uint8)
        images[split], labels[split] = imgs, labs
        for name, array in ((image_file, imgs), (label_file, labs)):
            digests[name] = sha256_file(write_idx_gz(folder / name, array))
    return FakeMnist(dir=folder, images=images, labels=labels, sha256=digests)


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch) -> FakeMnist:
    """A folder with the four MNIST files, tiny and fake; their sha256 replace the published ones for this test."""
    fake = write_fake_mnist(tmp_path / "fake-mnist")
    for name, digest in fake.sha256.items():
        monkeypatch.setitem(data_mod.MNIST_SHA256, name, digest)
    return fake


# --- the first real MNIST test digits, committed -------------------------------------------------------------------

DIGITS_FILE = Path(__file__).resolve().parent / "data" / "t10k-images-first30-idx3-ubyte.gz"
DIGITS_SHA256 = "1006bbeb291d8c8ea9e71f1805f1825742bf7da21ae4867b9ae7b169d70d3264"


def first_test_digits() -> np.ndarray:
    """The first 30 MNIST test images (t10k-images), uint8 (30, 28, 28), ink = 255, from the committed excerpt."""
    actual = sha256_file(DIGITS_FILE)
    assert actual == DIGITS_SHA256, f"{DIGITS_FILE} is corrupt: sha256 {actual} != {DIGITS_SHA256}"
    return data_mod.read_idx(DIGITS_FILE)


# --- a local HTTP server ----------------------------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the full length of ``payload``, sends half of it, then closes the connection."""

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


def start_server(handler) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def stop_server(server, thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def url_of(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def serve_folder(root: Path):
    """Start a server for ``root``: -> (server, thread); stop it with ``stop_server``."""
    return start_server(functools.partial(QuietHandler, directory=str(root)))


@pytest.fixture
def no_proxy(monkeypatch):
    """urllib honours *_proxy variables: make sure 127.0.0.1 is reached directly."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def served(tmp_path, no_proxy):
    """A local HTTP server on 127.0.0.1 serving a folder; yields (mirror URL, served folder)."""
    root = tmp_path / "served"
    root.mkdir()
    server, thread = serve_folder(root)
    try:
        yield url_of(server), root
    finally:
        stop_server(server, thread)


@pytest.fixture
def dead_mirror(no_proxy):
    """A port on 127.0.0.1 with a bound socket that does not listen: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()
