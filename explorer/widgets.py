"""Small display helpers the pages share: the two model columns, the mathematics expander, tables of numbers, the
results table, pictures, and the protocol lines under every figure."""

from __future__ import annotations

import numpy as np
import streamlit as st

from iwae import image_ref, testset
from iwae.catalog import Catalog
from iwae.image_ref import ImageRef
from iwae.posterior import OthersDrawn

from . import data, presenter, results
from .state import ViewState

TEST_BINARIZATION_SEED = testset.data.TEST_BINARIZATION_SEED
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def math_expander(state: ViewState, label: str = "The mathematics"):
    return st.expander(label, expanded=state.show_math, icon=":material/function:")


def columns(cat: Catalog, state: ViewState):
    """Two columns, left and right model: [(side, column, name, checkpoint), ...]. ``side`` ("left",
    "right") keeps element keys unique when both columns show the same model."""
    # Presenter view: one model per row (two models' figures side by side are too small on a projector).
    cols = [st.container(), st.container()] if presenter.stacked() else st.columns(2, gap="medium")
    out = []
    for side, col, name in zip(("left", "right"), cols, (state.model_a, state.model_b), strict=True):
        ckpt = cat.checkpoints[name]
        col.subheader(name)
        col.caption(results.describe(ckpt.metadata))
        out.append((side, col, name, ckpt))
    return out


def image_title(ref: ImageRef, labels: np.ndarray) -> str:
    """How captions name the image: "test image #7 (digit 9)" or "your own digit"."""
    return "your own digit" if image_ref.is_own_digit(ref) else f"test image #{ref} (digit {labels[ref]})"


def numbers_markdown(rows, header=("quantity", "value", "how it is computed")) -> str:
    """A markdown table of (label, value, note) rows (pipes escaped)."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def records_markdown(records: list[dict], formats: dict[str, str] | None = None) -> str:
    """A markdown table of dicts (the first one's keys are the columns), numbers formatted by ``formats``
    (column -> format spec), missing values as a dash. Static text, drawn with the page: a data grid (st.dataframe)
    loads and lays out its own canvas component in the browser (the home page's first view took a median of 1.96 s
    with two grids, 1.63 s with these tables: bench/results/first-views-2026-12-03-ab.txt)."""
    formats = formats or {}

    def cell(column: str, value) -> str:
        if value is None:
            return "—"
        return format(value, formats[column]) if column in formats else str(value)

    if not records:
        return ""
    columns = list(records[0])
    return numbers_markdown([tuple(cell(c, r.get(c)) for c in columns) for r in records], header=columns)


def results_table(cat: Catalog) -> None:
    """The evaluation results from the checkpoints' metadata, or how to produce them."""
    rows = results.results_rows(cat.checkpoints)
    pending = [n for n in cat.names if n not in {r["model"] for r in rows}]
    if rows:
        st.markdown(records_markdown(rows, {c: ".2f" for c in results.NLL_COLUMNS} | {results.ERROR_COLUMN: ".1e"}))
        protocol = results.results_protocol(cat.checkpoints)
        noise = results.seed_noise_note(data.seed_noise(cat.directory))
        st.caption(
            "Test negative log likelihood in nats (lower is better); bounds as negatives, like the paper's "
            "tables. " + (f"Protocol: {protocol}." if protocol else "") + (f" {noise}" if noise else "")
        )
    if pending:
        st.info(
            f"Evaluation pending for {', '.join(pending)}: the checkpoint metadata has no metrics yet. Run:",
            icon=":material/hourglass_top:",
        )
        st.code(results.EVALUATE_COMMAND, language="bash")


def show_image(container, picture: np.ndarray, caption: str | None = None) -> None:
    """A uint8 picture at its own pixel size (already upscaled without blurring by iwae.figures)."""
    container.image(picture, caption=caption, width=int(picture.shape[1]), clamp=True)


def protocol_line(n_images: int, extra: str = "") -> str:
    return (f"Binarized MNIST test set (binarized once, seed {TEST_BINARIZATION_SEED}); "
            f"{n_images} image{'s' if n_images != 1 else ''}" + (f"; {extra}" if extra else "") + ".")


def others_drawn_text(others: OthersDrawn) -> str:
    """How the K - 1 other samples behind a q_IW estimate were drawn, in words."""
    if others.source == "grid":
        return f"{others.draws:,} draws of the K − 1 others from q on the grid, stratified"
    return (f"{others.draws} draws of the K − 1 others from a pool of {others.pool_size:,} draws from q "
            "(q narrower than the grid resolves)")
