"""A user's digit -> MNIST-style binarized image (iwae/digit_image.py): real MNIST digits survive the round trip
through an upscaled, inverted PNG; centring, size, polarity and canvas handling; every bad input is an
ImageInputError with a message."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from mnist_files import first_test_digits
from PIL import Image, ImageDraw

from iwae import digit_image as di
from iwae import testset
from iwae.digit_image import ImageInputError

N_DIGITS = 30  # the first 30 MNIST test digits


# ---------------------------------------------------------------------------------------------
# Helpers


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a).reshape(-1) > 0.5, np.asarray(b).reshape(-1) > 0.5
    return float((a & b).sum() / (a | b).sum())


def shifted_iou(a: np.ndarray, b: np.ndarray) -> float:
    """The best IoU over shifts of ``a`` by at most one pixel: the centre of mass is placed by rounding, so a tiny
    change of the input can move the whole digit by one pixel when its centre sits near a half pixel."""
    a = np.asarray(a).reshape(28, 28)
    return max(iou(np.roll(a, (dr, dc), (0, 1)), b) for dr in (-1, 0, 1) for dc in (-1, 0, 1))


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, np.float64).reshape(28, 28)
    i = np.arange(28)
    return float((x.sum(1) * i).sum() / x.sum()), float((x.sum(0) * i).sum() / x.sum())


def box_sides(x: np.ndarray) -> tuple[int, int]:
    x = np.asarray(x).reshape(28, 28) > 0.5
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def upscaled(grey28: np.ndarray, factor: int, resample=Image.Resampling.NEAREST) -> np.ndarray:
    """(784,) grey in [0, 1], ink = 1 -> uint8 (28 f, 28 f), ink = 255."""
    image = Image.fromarray((grey28.reshape(28, 28) * 255).round().astype(np.uint8))
    return np.asarray(image.resize((28 * factor, 28 * factor), resample))


def l_shape_canvas(background=(0, 0, 0, 0), stroke=(0, 0, 0, 255), size=(300, 400)) -> np.ndarray:
    """An "L" drawn with a 20-pixel pen, off-centre (upper left): a vertical bar and a foot to the right."""
    image = Image.new("RGBA", (size[1], size[0]), background)
    draw = ImageDraw.Draw(image)
    draw.line([(60, 30), (60, 190), (150, 190)], fill=stroke, width=20, joint="curve")
    return np.asarray(image).copy()


@pytest.fixture(scope="module")
def mnist_digits() -> np.ndarray:
    """The first MNIST test digits, grey levels in [0, 1], (N_DIGITS, 784): from the committed excerpt
    tests/data/t10k-images-first30-idx3-ubyte.gz (no MNIST files needed; checked against them in test_data.py),
    scaled as ``data.load_mnist`` scales them."""
    digits = first_test_digits()[:N_DIGITS]
    return digits.reshape(len(digits), -1).astype(np.float32) / 255.0


# ---------------------------------------------------------------------------------------------
# Real digits round-trip


def test_mnist_digits_upscaled_and_inverted_come_back_as_themselves(mnist_digits):
    """A 28x28 MNIST digit, upscaled 10x to 280x280, inverted (dark ink on light paper) and saved as PNG, comes back
    close to the digit thresholded at 0.5: MNIST's own preprocessing applied to what is already its output.

    Measured on these 30 digits (IoU of the ink): nearest-neighbour upscaling, mean 0.998 (worst 0.963); bicubic
    upscaling (a smoother digit than MNIST's), mean 0.838 (worst 0.446), the worst being one-pixel shifts of thin
    strokes whose centre of mass sits near a rounding boundary: allowing a shift of one pixel, mean 0.868 (worst
    0.693). Against the app's seeded-Bernoulli test images (speckled edges): mean 0.788 (nearest), 0.736 (bicubic).
    """
    test_set = testset.load()[0][:N_DIGITS].numpy()  # the app's binarized test images (one seeded Bernoulli draw)
    nearest, bicubic, bicubic_shifted, bernoulli = [], [], [], []
    for grey, drawn in zip(mnist_digits, test_set, strict=True):
        reference = grey > 0.5
        x = di.prepare_digit_bytes(encode(255 - upscaled(grey, 10)))
        assert x.shape == (784,) and x.dtype == np.float32 and set(np.unique(x)) <= {0.0, 1.0}
        nearest.append(iou(x, reference))
        bernoulli.append(iou(x, drawn))
        y = di.prepare_digit_bytes(encode(255 - upscaled(grey, 10, Image.Resampling.BICUBIC))).reshape(28, 28)
        bicubic.append(iou(y, reference))
        bicubic_shifted.append(shifted_iou(y, reference))
    assert np.mean(nearest) > 0.97 and min(nearest) > 0.9, nearest
    assert np.mean(bicubic) > 0.75, bicubic
    assert np.mean(bicubic_shifted) > 0.83 and min(bicubic_shifted) > 0.6, bicubic_shifted
    assert np.mean(bernoulli) > 0.7, bernoulli
    # a digit is not merely matched by any digit: the output of digit 0 is far from digit 1's reference
    assert iou(di.prepare_digit_bytes(encode(255 - upscaled(mnist_digits[0], 10))), mnist_digits[1] > 0.5) < 0.3


def test_mnist_style_of_a_grey_mnist_digit_is_nearly_unchanged(mnist_digits):
    """MNIST digits already have a 20-pixel box centred by mass: reprocessing the 28x28 grey image barely moves it."""
    for grey in mnist_digits[:10]:
        out = di.mnist_style(grey.reshape(28, 28))
        assert out.shape == (28, 28) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert iou(di.binarize(out), grey > 0.5) > 0.9


# ---------------------------------------------------------------------------------------------
# Centring, size, aspect


def test_off_centre_digit_is_centred_by_mass_and_scaled_to_20_pixels(mnist_digits):
    for grey in mnist_digits[:5]:
        digit = upscaled(grey, 5)  # 140 x 140, ink = 255
        paper = np.zeros((480, 640), np.uint8)
        paper[20 : 20 + 140, 470 : 470 + 140] = digit  # near the top-right corner
        x = di.prepare_digit_bytes(encode(255 - paper))
        row, col = centre_of_mass(x)
        assert abs(row - 14) <= 1 and abs(col - 14) <= 1, (row, col)
        assert 19 <= max(box_sides(x)) <= 21, box_sides(x)
        # the grey 28x28 image is centred to within the half pixel of rounding
        grey_out = di.mnist_style(di.load_image_bytes(encode(255 - paper)))
        row, col = centre_of_mass(grey_out)
        assert abs(row - 14) <= 0.5 + 1e-6 and abs(col - 14) <= 0.5 + 1e-6, (row, col)
        # position on the page does not matter at all: the same digit in the middle gives the same image
        centred = np.zeros((480, 640), np.uint8)
        centred[170 : 170 + 140, 250 : 250 + 140] = digit
        np.testing.assert_array_equal(x, di.prepare_digit_bytes(encode(255 - centred)))


def test_a_large_digit_and_a_small_one_give_nearly_the_same_image(mnist_digits):
    for grey in mnist_digits[:5]:
        small = di.prepare_digit_bytes(encode(255 - upscaled(grey, 3)))  # 84 x 84
        large = di.prepare_digit_bytes(encode(255 - upscaled(grey, 30)))  # 840 x 840
        assert iou(small, large) > 0.9


def test_aspect_ratio_is_kept_a_bar_stays_narrow():
    paper = np.full((300, 300), 255, np.uint8)
    paper[40:260, 140:162] = 0  # a "1": 220 tall, 22 wide
    x = di.prepare_digit_bytes(encode(paper))
    height, width = box_sides(x)
    assert height == 20 and width <= 3, (height, width)


def test_large_photo_is_shrunk_and_still_works(mnist_digits):
    paper = np.zeros((1500, 2000), np.uint8)
    paper[300:1140, 500:1340] = upscaled(mnist_digits[0], 30)
    x = di.prepare_digit_bytes(encode(255 - paper, "JPEG", quality=90))
    assert di.load_image_bytes(encode(255 - paper, "JPEG")).shape == (768, 1024)  # at most WORK_SIDE
    assert iou(x, mnist_digits[0] > 0.5) > 0.85


# ---------------------------------------------------------------------------------------------
# Polarity, colour, alpha, orientation


def test_light_on_dark_and_dark_on_light_give_the_same_digit(mnist_digits):
    for grey in mnist_digits[:5]:
        light_on_dark = upscaled(grey, 10)
        a = di.prepare_digit_bytes(encode(light_on_dark))
        b = di.prepare_digit_bytes(encode(255 - light_on_dark))
        np.testing.assert_array_equal(a, b)
        assert iou(a, grey > 0.5) > 0.9


def test_grey_paper_and_coloured_ink_give_the_same_digit(mnist_digits):
    """Pencil on grey paper (contrast 0.4) and red ink on white are stretched to full ink like black on white."""
    ink = upscaled(mnist_digits[2], 10).astype(np.float64) / 255  # ink = 1
    black_on_white = di.prepare_digit_bytes(encode(255 - upscaled(mnist_digits[2], 10)))
    pencil = (200 - 100 * ink).round().astype(np.uint8)  # paper 200, strokes 100
    assert iou(di.prepare_digit_bytes(encode(pencil)), black_on_white) > 0.95
    red = np.stack([np.full_like(pencil, 255), *(2 * [(255 * (1 - ink)).round().astype(np.uint8)])], axis=2)
    np.testing.assert_array_equal(di.prepare_digit_bytes(encode(red)), black_on_white)


def test_unevenly_lit_paper_gives_the_same_digit_as_flat_paper(mnist_digits):
    """A photo whose paper darkens by 60 grey levels across (ink 100 levels below the darkest paper), with noise,
    saved as JPEG: the paper's level is estimated locally, so the shadow is not ink and the digit's box is unchanged.
    (With the border's median as the background instead, the box spans the page and 4-18 ink pixels remain.)
    Measured: within a one-pixel shift, IoU 0.92-0.99 with the same digit on flat paper with the same noise.
    """
    rng = np.random.default_rng(2)
    for grey in mnist_digits[:5]:
        ink = np.zeros((600, 800))
        ink[150:430, 300:580] = upscaled(grey, 10, Image.Resampling.BICUBIC) / 255.0
        noise = rng.normal(0, 4, ink.shape)
        pictures = []
        for paper in (220, np.linspace(220, 160, 800)[None, :]):
            photo = np.clip(paper * (1 - ink) + 60 * ink + noise, 0, 255).round().astype(np.uint8)
            pictures.append(di.prepare_digit_bytes(encode(photo, "JPEG", quality=85)))
        flat, shaded = pictures
        assert shifted_iou(shaded, flat) > 0.85, shifted_iou(shaded, flat)
        assert abs(shaded.sum() - flat.sum()) <= 0.1 * flat.sum()


def test_canvas_transparent_background_black_stroke_lands_as_drawn():
    x = di.prepare_digit_canvas(l_shape_canvas()).reshape(28, 28)
    assert x.sum() > 60
    height, width = box_sides(x)
    assert height == 20 or width == 20
    row, col = centre_of_mass(x)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1
    # an "L": the left columns of the box hold the vertical bar, the bottom rows the foot; the top right is empty
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    box = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert box[:, :2].mean() > 0.8 and box[-2:, :].mean() > 0.8  # the pen is 2.4 pixels wide here
    assert box[:10, -6:].sum() == 0


def test_canvas_background_and_stroke_colour_do_not_matter():
    reference = di.prepare_digit_canvas(l_shape_canvas())
    for background, stroke in [
        ((0, 0, 0, 0), (255, 255, 255, 255)),  # white pen on a transparent canvas
        ((0, 0, 0, 0), (30, 144, 255, 255)),  # blue pen
        ((255, 255, 255, 255), (0, 0, 0, 255)),  # opaque white canvas
        ((0, 0, 0, 255), (255, 255, 255, 255)),  # opaque black canvas, white pen
    ]:
        np.testing.assert_array_equal(di.prepare_digit_canvas(l_shape_canvas(background, stroke)), reference)
    # an RGB array (no alpha: opaque) and the same drawing uploaded as a PNG (with its transparency) give the same digit
    white_rgb = l_shape_canvas((255, 255, 255, 255))[..., :3]
    np.testing.assert_array_equal(di.prepare_digit_canvas(np.ascontiguousarray(white_rgb)), reference)
    np.testing.assert_array_equal(di.prepare_digit_bytes(encode(l_shape_canvas())), reference)


def test_canvas_to_grey_is_opacity_in_0_1():
    rgba = l_shape_canvas()
    grey = di.canvas_to_grey(rgba)
    assert grey.shape == rgba.shape[:2] and grey.dtype == np.float32
    np.testing.assert_allclose(grey, rgba[..., 3] / 255.0, atol=1e-6)


def test_jpeg_exif_orientation_is_applied():
    """A phone photo stored sideways with an orientation tag is read the way it was shot."""
    upright = 255 - l_shape_canvas(size=(300, 400))[..., 3]  # dark "L" on white
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # as a camera stores it: rotated
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    tagged = di.prepare_digit_bytes(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    expected = di.prepare_digit_bytes(encode(upright, "JPEG", quality=95))
    assert iou(tagged, expected) > 0.9
    assert iou(di.prepare_digit_bytes(encode(stored, "JPEG", quality=95)), expected) < 0.5


def test_binarize_is_a_threshold_at_one_half():
    image = np.linspace(0, 1, 784, dtype=np.float32).reshape(28, 28)
    x = di.binarize(image)
    assert x.shape == (784,) and x.dtype == np.float32
    np.testing.assert_array_equal(x, (image.reshape(-1) >= 0.5).astype(np.float32))
    assert di.binarize(image, 0.9).sum() == (image >= 0.9).sum()
    assert di.binarize(np.full(784, 0.5, np.float32)).sum() == 784 and di.binarize(np.full(784, 0.49)).sum() == 0


# ---------------------------------------------------------------------------------------------
# Bad input: always ImageInputError (a ValueError), with a message that says what to do


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def digit_png() -> bytes:
    return encode(255 - l_shape_canvas()[..., 3])


def _bad_files() -> dict[str, tuple[bytes, str]]:
    white = np.full((200, 200), 255, np.uint8)
    faint = white.copy()
    faint[50:150, 90:110] = 240  # 15 grey levels of contrast
    thin = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(thin).ellipse((40, 20, 240, 260), outline=0, width=1)  # a "0" drawn with a 1-pixel pen
    speck = white.copy()
    speck[100:102, 100:102] = 0
    return {
        "empty file": (b"", "empty"),
        "text file": (b"This is a text file, not a picture.\n" * 20, "not a picture"),
        "random bytes": (np.random.default_rng(0).bytes(4000), "not a picture"),
        "truncated PNG": (digit_png()[:300], "not a picture"),
        "truncated JPEG": (encode(255 - l_shape_canvas()[..., 3], "JPEG")[:700], "not a picture"),
        "6 MB file": (b"\x89PNG\r\n\x1a\n" + bytes(6 * 2**20), "limit is 5 MB"),
        "all-white PNG": (encode(white), "uniform"),
        "all-black PNG": (encode(np.zeros((200, 200), np.uint8)), "uniform"),
        "all-white JPEG": (encode(white, "JPEG", quality=50), "uniform"),
        "all-white RGB PNG": (encode(np.full((50, 60, 3), 255, np.uint8)), "uniform"),
        "fully transparent PNG": (encode(np.zeros((50, 60, 4), np.uint8)), "uniform"),
        "faint digit": (encode(faint), "too faint"),
        "1-pixel pen": (encode(np.asarray(thin)), "Only"),
        "speck": (encode(speck), "tiny"),
        "PNG declaring 5000 x 5000": (huge_png_header(5000, 5000), "too large"),
        "PNG declaring 20000 x 20000 (Pillow's DecompressionBombError)": (huge_png_header(20000, 20000), "too large"),
    }


@pytest.mark.parametrize("name", list(_bad_files()))
def test_bad_file_raises_image_input_error(name):
    content, message = _bad_files()[name]
    with pytest.raises(ImageInputError) as info:
        di.prepare_digit_bytes(content)
    assert message in str(info.value)
    assert str(info.value).rstrip().endswith(".")  # a sentence with advice, not a bare exception text


def test_size_limit_is_checked_before_decoding():
    """A valid picture over the byte limit is refused by size, without being decoded."""
    rng = np.random.default_rng(1)
    noisy = encode(rng.integers(0, 256, (1400, 1400, 3), dtype=np.uint8))  # incompressible: ~5.6 MB
    assert len(noisy) > di.MAX_UPLOAD_BYTES
    with pytest.raises(ImageInputError, match="limit is 5 MB"):
        di.load_image_bytes(noisy)


def test_pillow_decompression_bomb_warning_becomes_image_input_error():
    """Between Pillow's warning limit (~89 M pixels) and its error limit: with warnings as errors (as under
    `-W error`) Pillow raises the warning itself; otherwise it warns and the pixel limit refuses the file."""
    bomb = huge_png_header(10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageInputError, match="too large"):
            di.load_image_bytes(bomb)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageInputError, match="too large"):
        di.load_image_bytes(bomb)


def test_not_bytes_raises():
    with pytest.raises(ImageInputError):
        di.load_image_bytes("digit.png")  # a file name, not the file's bytes


@pytest.mark.parametrize(
    "canvas, message",
    [
        (np.zeros((280, 280, 4), np.uint8), "empty"),  # nothing drawn, transparent
        (np.full((280, 280, 4), 255, np.uint8), "empty"),  # nothing drawn, opaque white
        (l_shape_canvas(stroke=(0, 0, 0, 25)), "too faint"),  # a nearly transparent pen
        (np.zeros((280, 280), np.uint8), "shape"),
        (np.zeros((280, 280, 2), np.uint8), "shape"),
        (np.zeros((0, 280, 4), np.uint8), "shape"),
        (l_shape_canvas().astype(np.float32) / 255, "dtype"),
        (l_shape_canvas().tolist(), "numpy array"),
        (None, "numpy array"),
    ],
    ids=["transparent", "white", "faint", "2-D", "two channels", "no rows", "float", "list", "None"],
)
def test_bad_canvas_raises_image_input_error(canvas, message):
    with pytest.raises(ImageInputError, match=message):
        di.prepare_digit_canvas(canvas)


def test_thin_canvas_stroke_raises_with_advice():
    thin = l_shape_canvas()
    thin[...] = 0
    thin[20:260, 100, 3] = 255  # a 1-pixel vertical line, 240 long
    with pytest.raises(ImageInputError, match="thicker stroke"):
        di.prepare_digit_canvas(thin)


def test_mnist_style_and_binarize_reject_wrong_shapes():
    with pytest.raises(ImageInputError):
        di.mnist_style(np.zeros((28, 28, 3), np.float32))
    with pytest.raises(ImageInputError):
        di.mnist_style(np.zeros((28, 28), np.float32))  # no ink
    with pytest.raises(ImageInputError):
        di.binarize(np.zeros((27, 28), np.float32))
    assert issubclass(ImageInputError, ValueError)
