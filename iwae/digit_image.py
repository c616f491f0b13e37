"""A user's own digit (drawn on a canvas or uploaded as a picture) -> an MNIST-style binarized image (784,).

The steps follow MNIST's own preprocessing (LeCun, Cortes & Burges):

1. **Ink.** The picture becomes a grey ink image in [0, 1] (ink = 1, background = 0), whatever its
   polarity and colours. The background is read from the border (the median of the outermost rows and
   columns): a mostly transparent border (a drawing canvas) means ink = opacity; otherwise pixels are
   composited over white, and ink is how far a pixel is from the background colour in the direction
   away from it (darker than a light background, lighter than a dark one; the largest of the three
   channel differences, so a yellow stroke on white counts as much as a black one). Where the border itself
   is uneven (a photo of paper in a shadow), the background is a smooth field estimated from the paper
   around the strokes rather than one colour. The ink is then
   stretched so that the strokes' typical level is 1 (pencil on grey paper becomes full ink); a picture
   whose strongest ink is under ``MIN_CONTRAST`` is refused as uniform or too faint.
2. **Size.** The bounding box of the pixels with ink above ``INK_THRESHOLD`` (isolated specks of one or
   two pixels left out) is cropped and scaled, keeping its aspect ratio, so that its larger side is 20
   pixels, anti-aliased as MNIST's were: Pillow's BOX resampling of the grey image (each pixel the mean
   ink over its area) when shrinking, LANCZOS when enlarging a small picture.
3. **Position.** The 20-pixel box is placed in a 28 x 28 frame so that its centre of mass (of the grey
   levels) lands on pixel (14, 14) in (row, column) index coordinates, shifting by the rounded offset
   and clipping (never wrapping) whatever would fall outside. The MNIST test images themselves have
   their centre of mass at (13.99, 14.00) on average, standard deviation 0.29 pixel.
4. **Binarization.** A pixel is ink (1) when its grey level is at least 0.5: a deterministic threshold,
   so the same digit gives the same picture, and the same log p(x), every time. The test set the app
   otherwise shows was binarized differently, by one Bernoulli draw per pixel with a fixed seed
   (``data.TEST_BINARIZATION_SEED``), which speckles the edges of the strokes; a threshold keeps the
   most likely outcome of that draw instead.

Every problem with the input raises ``ImageInputError``, whose message is meant to be shown to the user
as it is: it says what is wrong and what to do.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # files above this are refused before decoding
MAX_PIXELS = 4096 * 4096  # images (and canvases) with more pixels are refused (decompression bombs)
WORK_SIDE = 1024  # a decoded picture is shrunk to at most this many pixels on its larger side
SHADING_TOLERANCE = 0.04  # a border whose colour varies more than this (5th-95th percentile) is unevenly lit paper
SHADING_GRID = 32  # ... whose level is then estimated on a grid this many cells across the larger side
MIN_CONTRAST = 0.15  # the strongest ink must differ from the background by this much (of full scale)
UNIFORM_TOLERANCE = 0.05  # below this the picture counts as one uniform colour (JPEG noise included)
INK_THRESHOLD = 0.2  # ink level (after stretching) of the pixels that define the bounding box
MIN_DIGIT_PIXELS = 4  # the bounding box's larger side, in input pixels, must be at least this ...
MIN_DIGIT_FRACTION = 1 / 25  # ... and at least this fraction of the picture's larger side
MIN_INK_PIXELS = 10  # fewer ink pixels than this after binarization: nothing recognisable is left
BOX_SIDE = 20  # MNIST: the digit's bounding box is scaled to 20 x 20 ...
FRAME_SIDE = 28  # ... and centred by its centre of mass in a 28 x 28 frame
FRAME_CENTRE = 14.0  # the centre of mass goes to pixel (14, 14), (row, column) index coordinates


class ImageInputError(ValueError):
    """The picture or canvas cannot be turned into a digit; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Reading


def load_image_bytes(data: bytes) -> np.ndarray:
    """An uploaded file (PNG, JPEG, anything Pillow opens) -> float32 grey (H, W) in [0, 1], ink = 1.

    Pictures larger than ``WORK_SIDE`` on their larger side are shrunk to it (area averaging).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageInputError(f"Expected the file's bytes, got {type(data).__name__}.")
    size = len(data)
    if size == 0:
        raise ImageInputError("The file is empty. Upload a PNG or JPEG picture of one digit.")
    if size > MAX_UPLOAD_BYTES:
        raise ImageInputError(
            f"The file is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB. "
            "Upload a smaller picture (a crop around the digit is enough)."
        )
    image = _decode(bytes(data))
    return _ink_from_rgba(_to_rgba_array(image), source="image")


def _decode(data: bytes) -> Image.Image:
    not_an_image = (
        "This file is not a picture that can be read (or it is damaged or cut short). "
        "Upload a PNG or JPEG picture of one digit."
    )
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(_too_many_pixels_message(None)) from None
    except Exception:  # Pillow's decoders raise many exception types on malformed files: all mean "not readable"
        raise ImageInputError(not_an_image) from None
    # Checked on the header's size, before any pixel is decoded. Pillow's own warning (above
    # Image.MAX_IMAGE_PIXELS) only fires for sizes this limit refuses anyway.
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageInputError(_too_many_pixels_message((width, height)))
    if width == 0 or height == 0:
        raise ImageInputError(not_an_image)
    try:
        if max(width, height) > WORK_SIDE:
            image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)  # decodes (JPEG: at reduced size) and shrinks
        image.load()
    except Exception:  # truncated or corrupt pixel data
        raise ImageInputError(not_an_image) from None
    try:
        image = ImageOps.exif_transpose(image)  # phone photos: apply the recorded orientation
    except Exception:  # a damaged EXIF block: keep the picture as stored
        pass
    return image


def _too_many_pixels_message(size) -> str:
    what = f"{size[0]} x {size[1]} pixels" if size else "too many pixels"
    return (
        f"The picture is too large ({what}; the limit is {MAX_PIXELS:,} pixels, e.g. 4096 x 4096). "
        "Upload a smaller picture (a crop around the digit is enough)."
    )


def _to_rgba_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 (H, W, 4)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;"):  # 16/32-bit grey or float grey
        grey = np.nan_to_num(np.asarray(image, dtype=np.float64))
        peak = grey.max()
        full = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0  # float in [0, 1], 8-bit or 16-bit levels
        grey8 = np.clip(grey / full * 255.0 + 0.5, 0, 255).astype(np.uint8)
        rgba = np.empty(grey8.shape + (4,), np.uint8)
        rgba[..., :3] = grey8[..., None]
        rgba[..., 3] = 255
        return rgba
    return np.asarray(image.convert("RGBA"), dtype=np.uint8)


def canvas_to_grey(rgba: np.ndarray) -> np.ndarray:
    """A drawing canvas's uint8 (H, W, 4) RGBA -> float32 grey (H, W) in [0, 1], ink = 1.

    Transparent background: ink = opacity, whatever the stroke colour. Opaque background (any colour):
    ink = distance from the background colour, as for an uploaded picture. An (H, W, 3) RGB array (a PNG
    saved without alpha) is taken as fully opaque.
    """
    if not isinstance(rgba, np.ndarray):
        raise ImageInputError(f"The canvas should be a numpy array, got {type(rgba).__name__}.")
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4) or rgba.shape[0] < 1 or rgba.shape[1] < 1:
        raise ImageInputError(f"The canvas should be an (H, W, 4) RGBA array, got shape {rgba.shape}.")
    if rgba.dtype != np.uint8:
        raise ImageInputError(f"The canvas should hold uint8 values 0-255, got dtype {rgba.dtype}.")
    if rgba.shape[0] * rgba.shape[1] > MAX_PIXELS:
        raise ImageInputError(_too_many_pixels_message((rgba.shape[1], rgba.shape[0])))
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, np.full(rgba.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return _ink_from_rgba(rgba, source="canvas")


def _border(a: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of (H, W, ...) -> (n, ...)."""
    if a.shape[0] <= 2 or a.shape[1] <= 2:
        return a.reshape((-1,) + a.shape[2:])
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def _background(rgb: np.ndarray, border: np.ndarray, light: bool) -> np.ndarray:
    """The background colour: the border's median (3,) when the border is even; for unevenly lit paper (a photo),
    a smooth field (H, W, 3): the paper's level on a coarse grid, each cell the lightest (light paper) or darkest
    of its 5 x 5 neighbourhood so that strokes drop out, smoothed and interpolated back to full size."""
    spread = np.percentile(border, 95, axis=0) - np.percentile(border, 5, axis=0)  # (3,)
    if spread.max() < SHADING_TOLERANCE:
        return np.median(border, axis=0)
    height, width = rgb.shape[:2]
    grid = (
        max(1, round(SHADING_GRID * width / max(height, width))),
        max(1, round(SHADING_GRID * height / max(height, width))),
    )
    coarse = np.asarray(Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).resize(grid, Image.Resampling.BOX))
    coarse = np.pad(coarse.astype(np.float32) / 255.0, ((2, 2), (2, 2), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(coarse, (5, 5), axis=(0, 1))  # (gh, gw, 3, 5, 5)
    paper = windows.max(axis=(3, 4)) if light else windows.min(axis=(3, 4))
    paper = np.lib.stride_tricks.sliding_window_view(
        np.pad(paper, ((1, 1), (1, 1), (0, 0)), mode="edge"), (3, 3), axis=(0, 1)
    )
    paper = paper.mean(axis=(3, 4)).astype(np.float32)  # (gh, gw, 3)
    channels = [
        Image.fromarray(np.ascontiguousarray(paper[..., c])).resize((width, height), Image.Resampling.BILINEAR)
        for c in range(3)
    ]
    return np.stack([np.asarray(c, dtype=np.float32) for c in channels], axis=2)


def _ink_from_rgba(rgba: np.ndarray, source: str) -> np.ndarray:
    """uint8 (H, W, 4) -> float32 ink (H, W) in [0, 1], background 0, the strokes' typical level 1."""
    alpha = rgba[..., 3].astype(np.float32) / 255.0  # (H, W)
    if np.median(_border(alpha)) < 0.5:  # transparent background (a canvas): what was painted is ink
        ink = alpha
    else:  # opaque background: composite over white, compare with the background colour
        rgb = rgba[..., :3].astype(np.float32) / 255.0  # (H, W, 3)
        rgb = rgb * alpha[..., None] + (1.0 - alpha[..., None])
        border = _border(rgb)  # (n, 3)
        light = float(np.median(border, axis=0) @ np.array([0.299, 0.587, 0.114], np.float32)) >= 0.5
        background = _background(rgb, border, light)  # (3,), or (H, W, 3) for shaded paper
        if light:  # light background (paper, a white canvas): ink is darker
            ink = (background - rgb).max(axis=2)
        else:  # dark background (a blackboard, an inverted scan): ink is lighter
            ink = (rgb - background).max(axis=2)
        ink = np.clip(ink, 0.0, 1.0)
    peak = float(ink.max())
    if peak < UNIFORM_TOLERANCE:
        if source == "canvas":
            raise ImageInputError("The canvas is empty: draw a digit first.")
        raise ImageInputError(
            "The picture is one uniform colour: there is no digit in it. "
            "Upload a picture of one dark digit on light paper (or a light digit on a dark background)."
        )
    if peak < MIN_CONTRAST:
        raise ImageInputError(
            "The digit is too faint to tell from the background. "
            + ("Draw it with a darker, opaque colour." if source == "canvas" else "Use a darker pen or more contrast.")
        )
    # Stretch: the strokes' typical level (upper decile of the clearly inked pixels) becomes 1.
    level = float(np.percentile(ink[ink > 0.5 * peak], 90))
    return np.clip(ink / level, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# MNIST's preprocessing


def _without_specks(mask: np.ndarray) -> np.ndarray:
    """Keep the pixels of a boolean (H, W) mask with at least two of their eight neighbours also set: a single
    pixel of noise or dust (or a pair) no longer stretches the bounding box; lines 1 pixel wide lose only their ends.
    """
    padded = np.pad(mask, 1).astype(np.uint8)
    height, width = mask.shape
    neighbours = sum(
        padded[1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width] for dr in (-1, 0, 1) for dc in (-1, 0, 1)
    )
    return mask & (neighbours >= 3)  # the pixel itself and two neighbours


def mnist_style(grey: np.ndarray) -> np.ndarray:
    """Grey ink (H, W) in [0, 1], ink = 1 -> float32 (28, 28) in [0, 1]: box scaled to 20, mass centred at (14, 14)."""
    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.size == 0 or not np.issubdtype(grey.dtype, np.number):
        raise ImageInputError(f"Expected a 2-D grey image, got shape {grey.shape} and dtype {grey.dtype}.")
    grey = np.clip(np.nan_to_num(grey.astype(np.float32)), 0.0, 1.0)
    inked = _without_specks(grey > INK_THRESHOLD)
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    if len(rows) == 0:
        raise ImageInputError("No digit found: the picture has no ink. Draw or upload a dark digit.")
    box = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h, w)
    h, w = box.shape
    if max(h, w) < max(MIN_DIGIT_PIXELS, MIN_DIGIT_FRACTION * max(grey.shape)):
        raise ImageInputError(
            f"The digit is tiny ({h} x {w} pixels in a {grey.shape[0]} x {grey.shape[1]} picture). "
            "Draw it larger, or crop the picture around the digit."
        )
    # Larger side to 20 pixels, aspect ratio kept (a "1" stays narrow): the box goes into the top-left corner of a
    # square, which is resized to 20 x 20. The same scale on both axes keeps a 1-pixel line as faint as it is thin.
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    square[:h, :w] = box
    # Shrinking: BOX, each pixel the mean ink over its area (MNIST's anti-aliasing). Enlarging a small
    # picture: LANCZOS, smooth rather than blocky; it rings slightly outside [0, 1], hence the clip.
    resample = Image.Resampling.BOX if side >= BOX_SIDE else Image.Resampling.LANCZOS
    scaled = np.asarray(Image.fromarray(square).resize((BOX_SIDE, BOX_SIDE), resample), dtype=np.float32)
    scaled = np.clip(scaled, 0.0, 1.0)  # (20, 20)
    mass = float(scaled.sum())
    if mass <= 0.0:
        raise ImageInputError("The digit vanished when scaled down: draw it with a thicker, darker stroke.")
    # Centre of mass to (14, 14): top-left corner at the rounded offset (half up), clipped at the frame.
    com_row = float((scaled.sum(axis=1) * np.arange(BOX_SIDE)).sum()) / mass
    com_col = float((scaled.sum(axis=0) * np.arange(BOX_SIDE)).sum()) / mass
    top = int(np.floor(FRAME_CENTRE - com_row + 0.5))
    left = int(np.floor(FRAME_CENTRE - com_col + 0.5))
    frame = np.zeros((FRAME_SIDE, FRAME_SIDE), np.float32)
    r0, r1 = max(top, 0), min(top + BOX_SIDE, FRAME_SIDE)
    c0, c1 = max(left, 0), min(left + BOX_SIDE, FRAME_SIDE)
    frame[r0:r1, c0:c1] = scaled[r0 - top : r1 - top, c0 - left : c1 - left]
    return frame


def binarize(image28: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Grey (28, 28) or (784,) in [0, 1] -> float32 (784,) in {0, 1}: 1 where the grey level is >= ``threshold``."""
    image28 = np.asarray(image28, dtype=np.float32)
    if image28.shape not in ((FRAME_SIDE, FRAME_SIDE), (FRAME_SIDE * FRAME_SIDE,)):
        raise ImageInputError(f"Expected a 28 x 28 image, got shape {image28.shape}.")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    return (image28.reshape(-1) >= threshold).astype(np.float32)


def _checked(x: np.ndarray) -> np.ndarray:
    ink = int(x.sum())
    if ink < MIN_INK_PIXELS:
        raise ImageInputError(
            f"Only {ink} of 784 pixels are ink after conversion to black and white: the digit is too thin or faint. "
            "Draw it larger, darker, or with a thicker stroke."
        )
    return x


def prepare_digit_bytes(data: bytes) -> np.ndarray:
    """An uploaded file -> float32 (784,) in {0, 1}, MNIST-style. Raises ImageInputError."""
    return _checked(binarize(mnist_style(load_image_bytes(data))))


def prepare_digit_canvas(rgba: np.ndarray) -> np.ndarray:
    """A drawing canvas's uint8 (H, W, 4) RGBA -> float32 (784,) in {0, 1}, MNIST-style. Raises ImageInputError."""
    return _checked(binarize(mnist_style(canvas_to_grey(rgba))))
