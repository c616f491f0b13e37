"""Your own digit: draw or upload one; it is preprocessed like MNIST and becomes every page's image."""

from __future__ import annotations

import streamlit as st
from streamlit_drawable_canvas import st_canvas

import explorer
from iwae import digit_image, figures

cat, state = explorer.page_frame()
data, views, widgets = explorer.data, explorer.views, explorer.widgets
_, labels = data.test_set()
CANVAS_SIDE = 280  # 10 canvas pixels per MNIST pixel


def use_upload() -> None:
    """Uploader callback: a good image becomes the chosen image; a bad one leaves the previous image."""
    upload = st.session_state.get("digit_upload")
    if upload is None:
        return
    try:
        x = digit_image.prepare_digit_bytes(upload.getvalue())
    except digit_image.ImageInputError as exc:
        st.session_state["digit_error"] = f"{upload.name}: {exc}"
        return
    explorer.sidebar.set_own_digit(x)
    st.session_state["digit_error"] = None
    st.session_state["digit_source"] = f"uploaded file {upload.name}"


st.title("Your own digit")
st.markdown(
    "Draw a digit or upload a photo of one. It is prepared the way MNIST was made and then binarized; from "
    "then on **every page shows it** in place of the test image (the sidebar has the way back). How do the "
    "models explain a digit they have never seen, and how far is its $\\log p(x)$ from a test digit's?"
)
with widgets.math_expander(state, "How the image is prepared"):
    st.markdown(
        "As for MNIST (LeCun et al.): grey levels with ink = 1 (a light background is inverted); the bounding "
        "box of the ink is scaled, keeping its aspect ratio, so its longer side is 20 pixels; it is placed in a "
        "28 × 28 frame with its centre of mass at the centre. Then every pixel is binarized by a fixed threshold "
        "(the same drawing always gives the same picture):"
    )
    st.latex(r"x_d = \mathbb{1}\big[\,g_d \ge 0.5\,\big], \qquad d = 1, \dots, 784")
    st.markdown("The test set itself was binarized once by Bernoulli draws with a fixed seed, "
                "$x_d \\sim \\mathrm{Bern}(g_d)$; a thresholded digit has cleaner edges than a test digit.")

draw_tab, upload_tab = st.tabs([":material/draw: Draw", ":material/upload: Upload"])
with draw_tab:
    st.caption("Draw one digit, large and centred, with the mouse or a finger; then press the button.")
    canvas = st_canvas(stroke_width=22, stroke_color="#000000", background_color="#FFFFFF",
                       height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw",
                       return_image_data=True, key="digit_canvas")
    if st.button("Use this drawing", icon=":material/check:", key="use_drawing"):
        try:
            rgba = canvas.image_data if canvas is not None else None
            if rgba is None:
                raise digit_image.ImageInputError("The canvas is empty: draw a digit first.")
            x = digit_image.prepare_digit_canvas(rgba)
        except digit_image.ImageInputError as exc:
            st.session_state["digit_error"] = str(exc)
        else:
            explorer.sidebar.set_own_digit(x)
            st.session_state["digit_error"] = None
            st.session_state["digit_source"] = "drawing"
        st.rerun()
with upload_tab:
    st.file_uploader(
        f"A PNG or JPEG of one digit (at most {digit_image.MAX_UPLOAD_BYTES // 2**20} MB)",
        type=["png", "jpg", "jpeg"], key="digit_upload", on_change=use_upload,
        help="Dark ink on light paper or light on dark both work; crop to the one digit.",
    )

error = st.session_state.get("digit_error")
if error:
    st.error(f"{error} The explorer keeps its previous image.", icon=":material/error:")

if state.own is None:
    st.info(f"No digit of yours yet: the pages show {widgets.image_title(state.image, labels)}.",
            icon=":material/info:")
    st.stop()

ref = state.image_ref
st.subheader(f"Your digit ({st.session_state.get('digit_source', 'from the link')})")
x = data.image_x(ref)
top = st.columns([1, 4])
widgets.show_image(top[0], figures.digit_image(x, 5), f"binarized, {int(x.sum())} ink pixels of 784")
with top[1]:
    st.markdown("What each model makes of it: the decoder's mean image at the encoder mean $\\mu(x)$, the exact "
                "$\\log p(x)$ by quadrature and the ELBO. Compare with the test set's average in the results "
                "table on the home page.")


def compute(ckpt) -> tuple:
    model, key = ckpt.model, data.model_key(ckpt)
    return (views.image_mean(model, key, ref), views.posterior_view(model, key, ref),
            views.image_curve(model, key, ref, state.seed))


columns = widgets.columns(cat, state)
with st.spinner("Quadrature for both models…"):
    computed = explorer.parallel.per_model(cat, state, compute)
for _side, col, name, ckpt in columns:
    key = data.model_key(ckpt)
    mu, view, curve = computed[name]
    with col:
        widgets.show_image(st, figures.digit_image(views.decode(ckpt.model, key, float(mu[0]), float(mu[1])), 4),
                          f"decoder mean at μ(x) = ({mu[0]:.2f}, {mu[1]:.2f})")
        st.markdown(widgets.numbers_markdown([
            ("log p(x)", f"{view['log_px']:.2f}", "adaptive quadrature over the latent plane"),
            ("ELBO = L₁", f"{curve.mean[0]:.2f}", f"mean of {curve.n_samples:,} log weights (seed {state.seed})"),
            ("log p(x) − ELBO", f"{view['log_px'] - curve.mean[0]:.2f}", "nats the VAE bound leaves"),
        ]))
        st.caption("Your own digit, thresholded at 0.5 (not the test set's Bernoulli binarization); one image.")
