"""Shared by app.py and the page scripts (not a page itself): the checkpoint catalogue, the sidebar
state, and Streamlit caches around the core package's functions.

Caching rules (see ../shared/notes/streamlit.md):
- models, the test set and global quadrature grids: ``st.cache_resource`` (one shared object), keyed on
  the checkpoint path and its modification time, so a retrained checkpoint is reloaded;
- computed arrays: ``st.cache_data`` with small keys (model key = path@mtime, image index, K, seed)
  and ``max_entries``; models and tensors are passed as ``_``-prefixed arguments, never hashed.
No mathematics here: every number comes from iwae.latent / posterior / sir / curves / quadrature.
"""

from __future__ import annotations

import os

import numpy as np
import streamlit as st
import torch

from iwae import catalog, curves, figures, image_ref, latent, posterior, quadrature, sir, testset
from iwae.catalog import Catalog, ViewState
from iwae.checkpoints import Checkpoint
from iwae.image_ref import ImageRef
from pages import boot

N_SIR_OVERLAY = 100  # SIR draws overlaid on the posterior plots
N_Q_OVERLAY = 100
IMAGE_CURVE_SAMPLES = 20_000  # draws from q behind the one-image L_K curve (4 blocks at K = 5000)
SUBSET_CURVE_SAMPLES = 5_000  # per image, for the subset average
N_RESAMPLE = 16
SUBSET_CHOICES = (10, 20, 50, 100)
DEFAULT_SUBSET = 50
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}

# One torch thread per computation (override with IWAE_APP_THREADS). The browser usually shares the machine's cores
# with the server, and torch's worker threads spinning against it made a K change on the Posteriors page take 0.6 s
# instead of 0.37 s on two cores (bench/app_latency.py); concurrent sessions still run in parallel, one Streamlit
# thread each.
APP_THREADS_ENV = "IWAE_APP_THREADS"
torch.set_num_threads(max(1, int(os.environ.get(APP_THREADS_ENV, "1"))))

# ------------------------------------------------------------------------------------------------
# Loading


@st.cache_resource(max_entries=16, show_spinner=False)
def _load(path: str, mtime_ns: int) -> tuple[Checkpoint | None, str | None]:
    """One checkpoint, loaded once per (path, mtime): (checkpoint, None) or (None, error message)."""
    return catalog.try_load(path)


def load_catalog() -> Catalog:
    """Every checkpoint in the checkpoint folder (``$IWAE_CHECKPOINT_DIR`` or checkpoints/)."""
    directory = catalog.checkpoint_dir()
    loaded, errors = {}, {}
    for path in catalog.discover(directory):
        ckpt, error = _load(str(path), catalog.file_stamp(path))
        name = catalog.checkpoint_name(path)
        if ckpt is not None:
            loaded[name] = ckpt
        else:
            errors[name] = error or f"{path}: could not be loaded"
    return Catalog(directory, loaded, errors)


def model_key(ckpt: Checkpoint) -> str:
    """Small cache key naming exactly these weights: path@mtime."""
    return f"{ckpt.path}@{catalog.file_stamp(ckpt.path)}"


@st.cache_resource(show_spinner=False)
def _test_set(path: str, mtime_ns: int):
    images, labels = testset.load(path)
    return images, labels.numpy()


def test_set() -> tuple[torch.Tensor, np.ndarray]:
    """The fixed binarized MNIST test set: images float (10000, 784), labels numpy (10000,).
    Raises testset.TestSetError when missing."""
    return _test_set(str(testset.DEFAULT_PATH), catalog.file_stamp(testset.DEFAULT_PATH))


def generator(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(catalog.stable_seed(*parts))


# ------------------------------------------------------------------------------------------------
# The sidebar: one set of widgets in the entrypoint, so values persist across pages


def _sanitize(cat: Catalog, n_images: int) -> None:
    """Before the widgets exist: fill session state from the URL once, and repair values that became
    invalid (a checkpoint that vanished)."""
    ss = st.session_state
    names = cat.names
    if "_view_init" not in ss:
        state, warnings = catalog.parse_query(st.query_params.to_dict(), names, n_images)
        ss["_query_warnings"] = warnings
        ss["_view_init"] = True
        ss["model_a"], ss["model_b"] = state.model_a, state.model_b
        ss["image"], ss["digit"], ss["K"] = state.image, state.digit, state.k
        ss["seed"], ss["show_math"] = state.seed, state.show_math
        ss["own"] = state.own
    default = catalog.default_state(names)
    for key in ("model_a", "model_b"):
        if ss.get(key) not in names:
            ss[key] = getattr(default, key)
    if ss.get("K") not in catalog.K_CHOICES:
        ss["K"] = default.k
    if ss.get("digit") not in catalog.DIGIT_CHOICES:
        ss["digit"] = "any"
    if not isinstance(ss.get("image"), int) or not 0 <= ss["image"] < n_images:
        ss["image"] = default.image
    if not isinstance(ss.get("seed"), int) or not 0 <= ss["seed"] <= catalog.MAX_SEED:
        ss["seed"] = default.seed
    ss.setdefault("show_math", False)
    if ss.get("own") is not None:
        try:
            image_ref.decode_digit(ss["own"])
        except ValueError:
            ss["own"] = None
    ss.setdefault("own", None)
    ss.setdefault("draw", 0)


def _matching(labels: np.ndarray, digit: str) -> np.ndarray:
    return np.arange(len(labels)) if digit == "any" else np.flatnonzero(labels == int(digit))


def _back_to_test_image() -> None:
    st.session_state["own"] = None


def _on_digit(labels: np.ndarray) -> None:
    """Digit filter changed: move to the first image of that digit after the current one."""
    ss = st.session_state
    ss["own"] = None
    if ss["digit"] != "any" and labels[ss["image"]] != int(ss["digit"]):
        _step_image(labels, +1)


def _step_image(labels: np.ndarray, step: int) -> None:
    ss = st.session_state
    ss["own"] = None
    idx = _matching(labels, ss["digit"])
    if len(idx) == 0:
        return
    if step > 0:
        later = idx[idx > ss["image"]]
        ss["image"] = int(later[0] if len(later) else idx[0])
    else:
        earlier = idx[idx < ss["image"]]
        ss["image"] = int(earlier[-1] if len(earlier) else idx[-1])


def _random_image(labels: np.ndarray) -> None:
    ss = st.session_state
    ss["own"] = None
    idx = _matching(labels, ss["digit"])
    ss["_random_count"] = ss.get("_random_count", 0) + 1
    rng = np.random.default_rng(catalog.stable_seed("random-image", ss["seed"], ss["_random_count"]))
    ss["image"] = int(rng.choice(idx))


def _on_preset() -> None:
    ss = st.session_state
    choice = ss.get("preset")
    if choice:
        ss["image"] = int(choice.split(":")[1])
        ss["digit"] = "any"
        ss["own"] = None
    ss["preset"] = None


def set_image(index: int, labels: np.ndarray) -> None:
    """Choose a test image from a callback (scatter click); clears a digit filter it contradicts."""
    ss = st.session_state
    ss["image"] = int(index)
    ss["own"] = None
    if ss.get("digit", "any") != "any" and labels[index] != int(ss["digit"]):
        ss["digit"] = "any"


def sidebar(cat: Catalog, labels: np.ndarray) -> ViewState:
    """The shared sidebar; returns the view state and mirrors it into the URL."""
    _sanitize(cat, len(labels))
    names = cat.names
    sb = st.sidebar
    sb.subheader("Models")
    sb.selectbox("Left column", names, key="model_a", format_func=lambda n: _model_label(cat, n))
    sb.selectbox("Right column", names, key="model_b", format_func=lambda n: _model_label(cat, n))
    sb.subheader("Test image")
    sb.selectbox("Digit filter", catalog.DIGIT_CHOICES, key="digit", on_change=_on_digit, args=(labels,),
                 format_func=lambda d: "any digit" if d == "any" else f"only {d}s",
                 help="Restricts previous / next / random to this digit.")
    sb.number_input("Image index (0-9999)", min_value=0, max_value=len(labels) - 1, step=1, key="image",
                    on_change=_back_to_test_image,
                    help="Index into the binarized MNIST test set. Clicking a point in the latent scatter sets it too.")
    c1, c2, c3 = sb.columns(3)
    c1.button(":material/chevron_left:", key="prev_image", on_click=_step_image, args=(labels, -1),
              help="Previous image (matching the filter)", width="stretch")
    c2.button(":material/chevron_right:", key="next_image", on_click=_step_image, args=(labels, +1),
              help="Next image (matching the filter)", width="stretch")
    c3.button(":material/casino:", key="random_image", on_click=_random_image, args=(labels,),
              help="A random image (matching the filter)", width="stretch")
    presets = catalog.load_instructive(cat.directory, len(labels))
    if presets:
        options = [f"{group}:{i}" for group, idx in presets.items() for i in idx]
        sb.selectbox(
            "Instructive images", options, key="preset", index=None, placeholder="choose a preset…",
            on_change=_on_preset,
            format_func=lambda o: f"{catalog.INSTRUCTIVE_GROUPS[o.split(':')[0]]}: #{o.split(':')[1]} "
                                  f"(digit {labels[int(o.split(':')[1])]})",
            help=catalog.instructive_protocol(cat.directory) or "Images picked by scripts for teaching.",
        )
    ss = st.session_state
    if ss["own"] is not None:
        sb.info("Every page shows **your own digit**.", icon=":material/draw:")
        sb.button(f"Back to test image #{ss['image']}", key="back_to_test", on_click=_back_to_test_image,
                  icon=":material/undo:")
    else:
        sb.caption(f"Image #{ss['image']}: digit {labels[ss['image']]}")
    sb.subheader("Sampling")
    sb.select_slider("K (importance samples)", options=catalog.K_CHOICES, key="K",
                     help="Log-spaced from 1 (q itself) to 5000 (the paper's test estimate).")
    sb.number_input("Random seed", min_value=0, max_value=catalog.MAX_SEED, step=1, key="seed",
                    help="Every sampled quantity (q_IW estimate, SIR draws, bounds) is reproducible from this.")
    sb.toggle("Show the mathematics", key="show_math")
    state = view_state()
    query = catalog.to_query(state)
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    sb.caption("The URL holds this state: share it to open the same models, image and K.")
    return state


def _model_label(cat: Catalog, name: str) -> str:
    ckpt = cat.checkpoints.get(name)
    return f"{name} ({catalog.describe(ckpt.metadata)})" if ckpt else name


FRAME_FLAG = boot.FRAME_FLAG
ENTRYPOINT_PAGE = "_entrypoint_page"  # title of the page app.py framed in its latest run


def frame() -> tuple[Catalog, ViewState] | None:
    """Load checkpoints and the test set, draw the shared sidebar and the notices: (catalog, state), or
    None after explaining what is missing (then the caller shows nothing else)."""
    cat = load_catalog()
    try:
        _, labels = test_set()
    except testset.TestSetError as exc:
        st.title("IWAE visual explorer")
        st.error(f"The binarized test set cannot be loaded: {exc}", icon=":material/error:")
        return None
    if not cat.checkpoints:
        show_missing(cat)
        return None
    state = sidebar(cat, labels)
    show_notices(cat)
    return cat, state


def page_frame() -> tuple[Catalog, ViewState]:
    """Start of every page: the frame app.py drew, or the same frame drawn here when the page file runs on its
    own (see boot.leave_legacy_run for how a fresh server's deep link is sent through app.py). Stops the page
    when nothing can be shown."""
    if st.session_state.get(FRAME_FLAG):
        return load_catalog(), view_state()
    result = frame()
    if result is None:
        st.stop()
    return result


def show_notices(cat: Catalog) -> None:
    """Warnings every page shows: URL values that were ignored (once) and checkpoints that failed."""
    for w in st.session_state.pop("_query_warnings", []) or []:
        st.warning(w, icon=":material/warning:")
    for name, error in cat.errors.items():
        st.warning(f"Checkpoint **{name}** could not be loaded and is left out: {error}", icon=":material/warning:")


def show_missing(cat: Catalog) -> None:
    """No usable checkpoint: say what is missing and how to make it."""
    st.title("IWAE visual explorer")
    st.error(f"No usable model checkpoint in `{cat.directory}`.", icon=":material/error:")
    for name, error in cat.errors.items():
        st.warning(f"Checkpoint **{name}** could not be loaded: {error}", icon=":material/warning:")
    st.markdown(
        "The explorer compares trained 2-D-latent VAE and IWAE models, stored as `*.safetensors` files in "
        f"`{cat.directory}` (set `{catalog.CHECKPOINT_DIR_ENV}` to use another folder). Train them with:"
    )
    st.code("\n".join(catalog.train_command(n) for n in catalog.EXPECTED_CHECKPOINTS), language="bash")
    st.markdown("then evaluate them (fills the results table) with:")
    st.code(catalog.EVALUATE_COMMAND, language="bash")


def math_expander(state: ViewState, label: str = "The mathematics"):
    return st.expander(label, expanded=state.show_math, icon=":material/function:")


def columns(cat: Catalog, state: ViewState):
    """Two columns, left and right model: [(side, column, name, checkpoint), ...]. ``side`` ("left",
    "right") keeps element keys unique when both columns show the same model."""
    cols = st.columns(2, gap="medium")
    out = []
    for side, col, name in zip(("left", "right"), cols, (state.model_a, state.model_b), strict=True):
        ckpt = cat.checkpoints[name]
        col.subheader(name)
        col.caption(catalog.describe(ckpt.metadata))
        out.append((side, col, name, ckpt))
    return out


def view_state() -> ViewState:
    """The sidebar's current values (set by app.py before the page runs)."""
    ss = st.session_state
    return ViewState(ss["model_a"], ss["model_b"], int(ss["image"]), ss["digit"], int(ss["K"]), int(ss["seed"]),
                     bool(ss["show_math"]), ss.get("own"))


def set_own_digit(x) -> None:
    """Make a user's binarized digit (784,) the image of every page (keeps the test index to go back to)."""
    st.session_state["own"] = image_ref.encode_digit(x)


def image_x(ref: ImageRef) -> torch.Tensor:
    """The binarized image (784,) a reference names: a test image or the user's own digit."""
    if image_ref.is_own_digit(ref):
        return torch.from_numpy(image_ref.decode_digit(ref))
    images, _ = test_set()
    return images[ref]


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


def results_table(cat: Catalog) -> None:
    """The evaluation results from the checkpoints' metadata, or how to produce them."""
    rows = catalog.results_rows(cat.checkpoints)
    pending = [n for n in cat.names if n not in {r["model"] for r in rows}]
    if rows:
        st.dataframe(
            rows, hide_index=True, width="stretch",
            column_config={
                c: st.column_config.NumberColumn(format="%.2f")
                for c in ("NLL (quadrature)", "NLL (IS, k=5000)", "-ELBO", "-L_5", "-L_50")
            } | {"max quad. error": st.column_config.NumberColumn(format="%.1e")},
        )
        protocol = catalog.results_protocol(cat.checkpoints)
        st.caption(
            "Test negative log likelihood in nats (lower is better); bounds as negatives, like the paper's "
            "tables. " + (f"Protocol: {protocol}." if protocol else "")
        )
    if pending:
        st.info(
            f"Evaluation pending for {', '.join(pending)}: the checkpoint metadata has no metrics yet. Run:",
            icon=":material/hourglass_top:",
        )
        st.code(catalog.EVALUATE_COMMAND, language="bash")


def show_image(container, picture: np.ndarray, caption: str | None = None) -> None:
    """A uint8 picture at its own pixel size (already upscaled without blurring by iwae.figures)."""
    container.image(picture, caption=caption, width=int(picture.shape[1]), clamp=True)


def protocol_line(n_images: int, extra: str = "") -> str:
    return (f"Binarized MNIST test set (binarized once, seed {testset.data.TEST_BINARIZATION_SEED}); "
            f"{n_images} image{'s' if n_images != 1 else ''}" + (f"; {extra}" if extra else "") + ".")


# ------------------------------------------------------------------------------------------------
# Cached computations (all pure functions of their small keys)


@st.cache_data(max_entries=16, show_spinner=False)
def latent_means(_model, key: str) -> tuple[np.ndarray, np.ndarray]:
    images, _ = test_set()
    mu, sd = latent.latent_means(_model, images)
    return mu.numpy(), sd.numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def image_mean(_model, key: str, ref: ImageRef) -> np.ndarray:
    """The encoder mean mu(x) (2,) of the chosen image (test or own)."""
    if not image_ref.is_own_digit(ref):
        return latent_means(_model, key)[0][ref]
    mu, _ = latent.latent_means(_model, image_x(ref)[None])
    return mu[0].numpy()


@st.cache_data(max_entries=16, show_spinner=False)
def manifold(_model, key: str, n: int, x_range: tuple, y_range: tuple) -> np.ndarray:
    return latent.decoded_manifold(_model, n, x_range, y_range, side=28).numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def decode(_model, key: str, z1: float, z2: float) -> np.ndarray:
    return latent.decode_means(_model, torch.tensor([[z1, z2]], dtype=torch.float32))[0].numpy()


@st.cache_data(max_entries=16, show_spinner=False)
def knn_accuracy(_model, key: str) -> float:
    mu, _ = latent_means(_model, key)
    _, labels = test_set()
    return latent.knn_accuracy(mu, labels)


@st.cache_resource(max_entries=4, show_spinner=False)
def global_grid(_model, key: str) -> quadrature.GlobalGrid:
    """~80 MB per model: shared by every image and session."""
    return quadrature.global_grid(_model)


@st.cache_data(max_entries=32, show_spinner=False)
def image_grid(_model, key: str, ref: ImageRef) -> posterior.ImageGrid:
    return posterior.image_grid(_model, global_grid(_model, key), image_x(ref))


@st.cache_data(max_entries=32, show_spinner=False)
def proposal_pool(_model, key: str, ref: ImageRef, seed: int) -> posterior.Pool:
    size = posterior.pool_size_for(max(catalog.K_CHOICES))
    return posterior.proposal_pool(_model, image_x(ref), size, generator(seed, "pool", ref))


@st.cache_data(max_entries=32, show_spinner=False)
def posterior_view(_model, key: str, ref: ImageRef) -> dict:
    """Per image, independent of K: the window, log q and log p(z|x) images, TV and KL of q."""
    g = image_grid(_model, key, ref)
    return {
        "x_axis": g.x_axis.numpy(),
        "y_axis": g.y_axis.numpy(),
        "log_q": g.to_image(g.log_q).astype(np.float32),
        "log_p": g.to_image(g.log_posterior).astype(np.float32),
        "log_px": g.log_px,
        "log_px_error": g.log_px_error,
        "mu": g.mu.numpy(),
        "sigma": g.sigma.numpy(),
        "mass_q": g.mass(g.log_q),
        "mass_p": g.mass(g.log_posterior),
        "tv_q": posterior.total_variation(g.log_posterior, g.log_q, g.log_area),
        "kl_q": posterior.kl_divergence(g.log_posterior, g.log_q, g.log_area),
    }


@st.cache_data(max_entries=128, show_spinner=False)
def qiw_view(_model, key: str, ref: ImageRef, seed: int, k: int) -> dict:
    """Per K: log q_IW on the image's window (shared pool and grid), its integral, TV and KL to p."""
    g = image_grid(_model, key, ref)
    pool = proposal_pool(_model, key, ref, seed)
    log_qiw, method = posterior.log_q_iw_for_display(g, pool, k, generator(seed, "qiw", ref, k))
    return {
        "method": method,
        "log_qiw": g.to_image(log_qiw).astype(np.float32),
        "mass": g.mass(log_qiw),
        "tv": posterior.total_variation(g.log_posterior, log_qiw, g.log_area),
        "kl": posterior.kl_divergence(g.log_posterior, log_qiw, g.log_area),
    }


def sir_is_shared(k: int, n_draws: int = N_SIR_OVERLAY) -> bool:
    """True when the overlay's K-sets cannot all be disjoint within the pool (dependent draws)."""
    return k * n_draws > posterior.pool_size_for(max(catalog.K_CHOICES))


@st.cache_data(max_entries=128, show_spinner=False)
def sir_overlay(_model, key: str, ref: ImageRef, seed: int, k: int) -> dict:
    """SIR draws for the posterior overlay, resampled from the image's pool of q draws (no decoder call)."""
    pool = proposal_pool(_model, key, ref, seed)
    draws = sir.sir_from_pool(pool.z, pool.log_w, k, N_SIR_OVERLAY, generator(seed, "sir-overlay", ref, k))
    return {"z": draws.z.numpy(), "ess": float(draws.ess.double().mean()), "shared": not draws.independent}


@st.cache_data(max_entries=32, show_spinner=False)
def q_overlay(_model, key: str, ref: ImageRef, seed: int) -> np.ndarray:
    return sir.q_samples(_model, image_x(ref), N_Q_OVERLAY, generator(seed, "q-overlay", ref)).numpy()


@st.cache_resource(max_entries=32, show_spinner=False)
def posterior_fixed_figure(_model, key: str, ref: ImageRef, seed: int):
    """The (q | p) figure of the Posteriors page, built once per model, image and seed: a K change then builds
    only the K figure (each costs ~20 ms of plotly validation). Shared read-only: st.plotly_chart copies it."""
    view = posterior_view(_model, key, ref)
    return figures.posterior_fixed_figure(view["x_axis"], view["y_axis"], view["log_q"], view["log_p"],
                                          q_draws=q_overlay(_model, key, ref, seed), mu=view["mu"],
                                          sigma=view["sigma"])


@st.cache_data(max_entries=32, show_spinner=False)
def image_curve(_model, key: str, ref: ImageRef, seed: int) -> curves.BoundCurve:
    """L_K for every K of the slider, for one image, from IMAGE_CURVE_SAMPLES draws."""
    return curves.bound_curve(_model, image_x(ref)[None], catalog.K_CHOICES, IMAGE_CURVE_SAMPLES,
                              generator(seed, "image-curve", ref))


@st.cache_data(max_entries=8, show_spinner=False)
def subset_curve(_model, key: str, n_images: int, seed: int) -> dict:
    """L_K averaged over the first n test images, and their mean quadrature log p(x)."""
    images, _ = test_set()
    x = images[:n_images]
    curve = curves.bound_curve(_model, x, catalog.K_CHOICES, SUBSET_CURVE_SAMPLES, generator(seed, "subset", n_images))
    log_px, err = quadrature.log_px_batch(_model, global_grid(_model, key), x)
    return {"curve": curve, "log_px": float(log_px.mean()), "max_error": float(err.max())}


@st.cache_data(max_entries=32, show_spinner=False)
def resample(_model, key: str, ref: ImageRef, seed: int, k: int, draw: int) -> dict:
    """Decoded means of N_RESAMPLE plain q draws and of N_RESAMPLE independent SIR draws at K."""
    x = image_x(ref)
    zq = sir.q_samples(_model, x, N_RESAMPLE, generator(seed, "resample-q", ref, draw))
    draws = sir.sir_sample(_model, x, k, N_RESAMPLE, generator(seed, "resample-sir", ref, k, draw))
    return {
        "q_images": latent.decode_means(_model, zq).numpy(),
        "sir_images": latent.decode_means(_model, draws.z).numpy(),
        "ess": float(draws.ess.double().mean()),
        "distinct": int(len(torch.unique(draws.z, dim=0))),
    }
