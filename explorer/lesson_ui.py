"""The lesson page's glue: which step is shown (``?step=N`` in the URL, 1-based), Back / Next, applying a step's state
to the shared sidebar (through ``sidebar.PENDING``, before its widgets exist), "Open in the explorer", and each step's
figures: the explorer's own figure builders and cached computations, drawn compactly, interactive as on the pages."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from iwae import figures, snr, snr_figures, toy, toy_figures
from iwae.catalog import Catalog

from . import chart, estimator, lesson, presenter, results, sidebar, views, widgets
from .data import image_x, model_key, test_set
from .lesson import STEPS, ImageChoice, Step
from .state import ViewState

STEP_PARAM = "step"
APPLIED = "_lesson_applied"  # session state: the step whose state was last applied


def _plan(cat: Catalog, number: int) -> tuple[Step, tuple[str, str], ImageChoice]:
    step = STEPS[number - 1]
    models = lesson.step_models(step, cat.names)
    _, labels = test_set()
    return step, models, _choice(str(cat.directory), step.image, models, len(labels))


@st.cache_data(max_entries=64, show_spinner=False)
def _choice(directory: str, rule: str, models: tuple[str, str], n_images: int) -> ImageChoice:
    return lesson.choose_image(rule, directory, models, n_images)


def _go(cat: Catalog, number: int) -> None:
    """Show step ``number``: its state for the sidebar on the next run, and the step in the URL."""
    step, models, choice = _plan(cat, number)
    values = {"model_a": models[0], "model_b": models[1], "image": choice.index, "digit": "any", "own": None}
    if step.view == "toy":
        values |= {"toy_target": step.toy_target, "toy_k": step.k}
    else:
        values["K"] = step.k
    st.session_state[sidebar.PENDING] = values
    st.session_state[APPLIED] = number
    st.query_params[STEP_PARAM] = str(number)


def current_step(cat: Catalog) -> int:
    """The step the URL names; on its first showing in this session, its state is applied (one more run)."""
    number, warning = lesson.parse_step(st.query_params.get(STEP_PARAM))
    if st.session_state.get(APPLIED) != number:
        if warning:  # shown by the next run's frame with the URL's other notices
            st.session_state.setdefault("_query_warnings", []).append(warning)
        _go(cat, number)
        st.rerun()
    if warning:
        st.warning(warning, icon=":material/warning:")
    return number


def navigation(cat: Catalog, number: int) -> None:
    """Back, the step counter, Next, and "Open in the explorer" carrying the step's state to the full page."""
    c1, c2, c3, c4 = st.columns([1, 2, 1, 2], vertical_alignment="center")
    c1.button("Back", icon=":material/arrow_back:", key="lesson_back", disabled=number <= 1, width="stretch",
              on_click=_go, args=(cat, number - 1))
    c2.progress(number / len(STEPS), text=f"Step {number} of {len(STEPS)}")
    c3.button("Next", icon=":material/arrow_forward:", key="lesson_next", disabled=number >= len(STEPS),
              width="stretch", type="primary", on_click=_go, args=(cat, number + 1))
    c4.page_link(lesson.VIEW_PAGES[STEPS[number - 1].view], label="Open in the explorer",
                 icon=":material/open_in_new:")


def header(cat: Catalog, state: ViewState, number: int) -> None:
    """The step's title and text beside its question and picture, then why the image was chosen: compact, so that
    the figures start within a projector's 720 pixels."""
    step, _, choice = _plan(cat, number)
    shows_image = step.view not in ("toy", "snr")
    text, question, picture = st.columns([5, 4, 1.4] if shows_image else [5, 4, 0.01], vertical_alignment="top")
    text.markdown(f"### {number}. {step.title}")
    text.markdown(step.text)
    question.info(f"**Question for the class:** {step.question}", icon=":material/help:")
    if shows_image:
        _, labels = test_set()
        widgets.show_image(picture, figures.digit_image(image_x(state.image_ref), 3),
                           widgets.image_title(state.image_ref, labels))
        if state.image_ref == choice.index:
            st.caption(f"Why {widgets.image_title(state.image_ref, labels)}: {choice.reason}.")


def _chart(fig: go.Figure, key: str, height: int) -> None:
    chart.plotly_chart(presenter.style(fig, height=height + 60), key=key, config=widgets.PLOTLY_CONFIG)


def _pair(cat: Catalog, state: ViewState):
    """The two models side by side: [(side, column, name, checkpoint)]."""
    cols = st.columns(2, gap="medium")
    out = []
    for side, col, name in zip(("left", "right"), cols, (state.model_a, state.model_b), strict=True):
        col.markdown(f"**{name}**: {results.describe(cat.checkpoints[name].metadata)}")
        out.append((side, col, name, cat.checkpoints[name]))
    return out


def figures_of(cat: Catalog, state: ViewState, number: int) -> None:
    """The step's figures for the current state (a student may have moved K within the step)."""
    step = STEPS[number - 1]
    k, seed, ref = state.k, state.seed, state.image_ref
    _, labels = test_set()
    if step.view == "snr":
        path = cat.directory / snr.DEFAULT_FILE
        try:
            data = snr.load_snr(path)
        except (OSError, snr.SNRFileError) as exc:
            st.info(f"No usable gradient-SNR measurement ({exc}). Produce it with `{snr.SCRIPT_COMMAND}`.",
                    icon=":material/hourglass_top:")
            return
        _chart(snr_figures.snr_figure(data, height=400), "lesson_snr", 400)
        st.caption(snr_figures.protocol_caption(data))
        return
    if step.view == "toy":
        target = step.toy_target
        elbo_fit, iwae_fit = views.toy_fit(target, 1, seed), views.toy_fit(target, step.k, seed)
        result = views.toy_result(target, step.k, seed, elbo_fit, iwae_fit)
        _chart(toy_figures.toy_figure(result, height=340), "lesson_toy", 340)
        st.caption(f"{toy.TARGETS[target].label}; K = {step.k}; seed {seed}. Colour: log density, one scale; "
                   "white, edged in black: each q's 2-sd ellipse.")
        return
    draw = estimator.new_draw_button("lesson_new_draw") if step.view == "estimator" else 0
    for side, col, name, ckpt in _pair(cat, state):
        key, model = model_key(ckpt), ckpt.model
        with col, st.spinner(f"Computing for {name}…"):
            if step.view == "latent":
                mu, _ = views.latent_means(model, key)
                fig = figures.latent_scatter(mu, labels, chosen=None if state.own else state.image,
                                             window=figures.latent_window(mu), height=420)
                # The legend beside the plot, not under it: the square plot then keeps the figure's height.
                fig.update_traces(marker_size=6, selector=dict(meta=figures.DIGIT_META))
                fig.update_layout(legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top"))
                _chart(fig, f"lesson_latent_{side}", 420)
            elif step.view in ("posterior_q", "posterior_k"):
                view = views.posterior_view(model, key, ref)
                if step.view == "posterior_q":
                    fig = go.Figure(views.posterior_fixed_figure(model, key, ref, seed))
                    distance = f"TV(q, p) = {view['tv_q']:.3f}"
                else:
                    qiw = views.qiw_view(model, key, ref, seed, k)
                    sir_draws = views.sir_overlay(model, key, ref, seed, k)
                    fig = figures.posterior_k_figure(view["x_axis"], view["y_axis"], view["log_q"], qiw["log_qiw"],
                                                     view["log_p"], k, sir_draws=sir_draws["z"], mu=view["mu"],
                                                     sigma=view["sigma"], q_resolved=view["q_resolved"])
                    distance = f"TV(q_IW, p) = {qiw['tv']:.3f} at K = {k}; TV(q, p) = {view['tv_q']:.3f}"
                _chart(fig, f"lesson_posterior_{side}", 330)
                st.markdown(f"**{distance}**")
            elif step.view == "resampling":
                out = views.resample(model, key, ref, seed, k, 0)
                a, b = st.columns(2)
                scale = 2  # four 4-tile grids side by side fit 1280 px at 2x (at 3x they overflow the projector)
                widgets.show_image(a, figures.tile_images(out["q_images"], cols=4, scale=scale), "draws from q(z|x)")
                widgets.show_image(b, figures.tile_images(out["sir_images"], cols=4, scale=scale),
                                   f"SIR draws, K = {k}")
                st.markdown(f"**ESS {out['ess']:.1f} of {k}**; distinct SIR draws {out['distinct']} of "
                            f"{views.N_RESAMPLE}")
            elif step.view == "bounds":
                curve = views.image_curve(model, key, ref, seed)
                log_px, _ = views.image_log_px(model, key, ref)
                _chart(figures.bound_curve_figure(curve.ks, curve.mean, curve.spread, log_px, height=360),
                       f"lesson_bounds_{side}", 360)
                st.markdown(f"**log p(x) = {log_px:.2f}**; ELBO {curve.mean[0]:.2f}; "
                            f"L_K at K = {k}: {curve.mean[curve.ks.index(k)]:.2f}")
            elif step.view == "estimator":
                d = estimator.panel(ckpt, state, side, draw, height=330)
                st.markdown(f"**mean log w = {d.elbo:.2f} ≤ L_K = log mean w = {d.l_k:.2f}**; "
                            f"ESS {d.ess:.1f} of {d.k}")


def warm_step(cat: Catalog, number: int, seed: int) -> None:
    """Compute into the caches what ``figures_of`` shows for step ``number`` in its own state (its pair, image and K)
    at ``seed``, drawing nothing: explorer.warm runs it in the background for every step. Mirrors ``figures_of``."""
    step, models, choice = _plan(cat, number)
    if step.view == "toy":
        views.shipped_toy_result(step.toy_target, step.k, seed)
        return
    for name in dict.fromkeys(models):
        ckpt = cat.checkpoints[name]
        model, key, ref = ckpt.model, model_key(ckpt), choice.index
        if step.view == "latent":
            views.latent_means(model, key)
        elif step.view in ("posterior_q", "posterior_k"):
            views.posterior_view(model, key, ref)
            if step.view == "posterior_q":
                views.posterior_fixed_figure(model, key, ref, seed)
            else:
                views.qiw_view(model, key, ref, seed, step.k)
                views.sir_overlay(model, key, ref, seed, step.k)
        elif step.view == "resampling":
            views.resample(model, key, ref, seed, step.k, 0)
        elif step.view == "bounds":
            views.image_curve(model, key, ref, seed)
            views.image_log_px(model, key, ref)
        elif step.view == "estimator":
            estimator.estimator_draw(model, key, ref, seed, step.k, 0)
