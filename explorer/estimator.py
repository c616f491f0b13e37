"""The Posteriors page's "Inspect the estimator" section (also a lesson step): one draw of K log weights for the chosen
image, taken apart by ``iwae.estimator``: sorted bars, normalized weights, the mean of the log (ELBO estimate)
against the log of the mean (L_K) computed from exactly those numbers, the log-sum-exp step, the effective sample
size; "New draw" repeats it with fresh draws."""

from __future__ import annotations

import streamlit as st

from iwae.catalog import Catalog
from iwae.checkpoints import Checkpoint
from iwae.estimator import EstimatorDraw, draw_log_weights, inspect_log_weights
from iwae.estimator_figures import estimator_figure
from iwae.image_ref import ImageRef
from iwae.rng import generator

from . import chart, presenter, widgets
from .data import image_x, model_key
from .state import ViewState

SHOW_KEY = "estimator_show"  # the Posteriors page's section is drawn only when asked for
DRAW_KEY = "estimator_draw"  # session state: how many times "New draw" was pressed (enters the random stream)


@st.cache_data(max_entries=64, show_spinner=False)
def estimator_draw(_model, key: str, ref: ImageRef, seed: int, k: int, draw: int) -> EstimatorDraw:
    """One draw of K log weights for the image, taken apart (a pure function of its keys)."""
    return inspect_log_weights(draw_log_weights(_model, image_x(ref), k, generator(seed, "estimator", ref, k, draw)))


def _new_draw() -> None:
    st.session_state[DRAW_KEY] = st.session_state.get(DRAW_KEY, 0) + 1


def new_draw_button(key: str = "estimator_new_draw") -> int:
    """The "New draw" button; returns the current draw number."""
    st.button("New draw", icon=":material/casino:", on_click=_new_draw, key=key,
              help="K fresh draws from q(z|x); the draw number and the sidebar's seed make them reproducible.")
    return st.session_state.get(DRAW_KEY, 0)


def rows(d: EstimatorDraw) -> list[tuple[str, str, str]]:
    """The numbers of one draw, each computed from the K log weights shown."""
    return [
        ("max log w", f"{d.shift:.3f}", "the log-sum-exp shift: the largest log weight"),
        ("log Σ exp(log w − max)", f"{d.log_sum_shifted:.3f}", f"between 0 and log K = {d.log_k:.3f}; nothing "
                                                                  "overflows or underflows to 0"),
        (f"L_K = log mean w, K = {d.k}", f"**{d.l_k:.3f}**",
         f"= {d.shift:.3f} + {d.log_sum_shifted:.3f} − {d.log_k:.3f} (max + log-sum − log K)"),
        ("mean of log w (ELBO estimate)", f"**{d.elbo:.3f}**", "the average of the K bars' heights"),
        ("L_K − mean log w", f"{d.l_k - d.elbo:.3f}", "≥ 0 always (Jensen): the log of the mean ≥ the mean of the log"),
        ("largest w̃", f"{d.w_tilde.max():.3f}", "w̃_k = w_k / Σ_j w_j, summing to 1"),
        ("effective sample size", f"{d.ess:.1f} of {d.k}", "1 / Σ w̃²: how many draws really count"),
    ]


def panel(ckpt: Checkpoint, state: ViewState, side: str, draw: int, height: int = 430) -> EstimatorDraw:
    """One model's draw: the figure and its numbers."""
    with st.spinner(f"{state.k} draws from q for {ckpt.name}…"):
        d = estimator_draw(ckpt.model, model_key(ckpt), state.image_ref, state.seed, state.k, draw)
    chart.plotly_chart(presenter.style(estimator_figure(d, height=height), height=height + 40),
                       key=f"estimator_{side}", config=widgets.PLOTLY_CONFIG)
    return d


def section(cat: Catalog, state: ViewState, title: str) -> None:
    """The whole section of the Posteriors page."""
    st.header("Inspect the estimator")
    st.markdown(
        f"One draw of **K = {state.k}** log weights $\\log w_k = \\log p(x|z_k) + \\log p(z_k) - \\log q(z_k|x)$ for "
        f"{title}, sorted. The ELBO estimate is the **mean of the log** (dashed); the IWAE bound $\\mathcal{{L}}_K$ is "
        "the **log of the mean** (solid), always at least as large. Below: the normalized weights $\\tilde w_k$, the "
        "share each draw gets when resampling."
    )
    with widgets.math_expander(state, "The log-sum-exp step"):
        st.latex(r"\mathcal{L}_K = \log \frac1K \sum_{k=1}^K e^{\log w_k} = m + \log \sum_{k=1}^K e^{\log w_k - m}"
                 r" - \log K,\qquad m = \max_k \log w_k")
        st.markdown("Log weights of MNIST images are around −100 nats: $e^{-100}$ is 3.7e-44, $e^{-800}$ underflows "
                    "to 0 even in float64, so exp-then-log fails; shifting by the maximum keeps every term in "
                    "(0, 1]. $\\tilde w_k = e^{\\log w_k - m} / \\sum_j e^{\\log w_j - m}$ and "
                    "$\\mathrm{ESS} = 1 / \\sum_k \\tilde w_k^2$.")
    # Opt-in: K log weights per model are a draw and a K-bar chart each, too slow to redo on every K change.
    if not st.toggle("Show one draw of K log weights", key=SHOW_KEY, value=False,
                     help="Draws K log weights per model for this image and K, and shows them taken apart."):
        return
    draw = new_draw_button()
    for side, col, _name, ckpt in widgets.columns(cat, state):
        with col:
            d = panel(ckpt, state, side, draw)
            st.markdown(widgets.numbers_markdown(rows(d)))
    st.caption(widgets.protocol_line(1, f"{title}; one draw of K = {state.k} from q(z|x), seed {state.seed}, draw "
                                        f"{draw}; float64 reductions"))
