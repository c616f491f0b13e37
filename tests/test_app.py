"""The Streamlit explorer run headless with AppTest, every page through app.py as a browser runs it
(sidebar present), plus the logic behind it without Streamlit: the checkpoint folder (iwae/catalog.py), the view
state and its URL form (explorer/state.py), the metadata tables (explorer/results.py), the seeds (iwae/rng.py), and
the Streamlit internals that explorer/legacy.py relies on.

Checkpoints are small synthetic files in a temporary folder (``IWAE_CHECKPOINT_DIR``): deterministic,
independent of training runs rewriting checkpoints/, and loaded through the same code as real ones.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import chart as explorer_chart
from explorer import data as explorer_data
from explorer import legacy, results, threads
from explorer import state as view
from explorer.presets import INSTRUCTIVE_FILE
from iwae import catalog, image_ref, testset
from iwae.checkpoints import save_checkpoint
from iwae.model import VAE, ModelConfig

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
PAGES = {
    "pages/latent.py": "Latent space",
    "pages/posteriors.py": "Posteriors",
    "pages/resampling.py": "Resampling",
    "pages/bounds.py": "Bounds and comparison",
    "pages/toy.py": "Toy targets",
    "pages/digit.py": "Your own digit",
}
NAV_TITLES = PAGES  # the navigation titles are the pages' own titles
CORE_PAGES = list(PAGES)[:4]  # the pages about the chosen test image, both models side by side
MODEL_PAGES = [p for p in PAGES if p != "pages/toy.py"]  # the toy page shows no trained model
ENTRYPOINT_PAGE = "_entrypoint_page"
SIDEBAR_WIDGETS = {
    "selectbox": {"model_a", "model_b", "digit"},
    "number_input": {"image", "seed"},
    "select_slider": {"K"},
    "toggle": {"show_math"},
}

pytestmark = pytest.mark.skipif(not testset.DEFAULT_PATH.is_file(), reason="the shipped binarized test set is missing")


def _metadata(objective: str, k: int, metrics: dict) -> dict:
    return {
        "config": ModelConfig().to_dict(),
        "objective": objective,
        "k": k,
        "estimator": "standard",
        "epochs": 3,
        "seed": 0,
        "data": {"dataset": "mnist (synthetic test model)"},
        "history": [
            {"epoch": e, "lr": 1e-3, "train_bound": -200.0 + 10 * e, "test_bound": -205.0 + 10 * e,
             "test_images": 100, "seconds": 1.0}
            for e in (1, 2, 3)
        ],
        "metrics": metrics,
    }


def _write_model(path: Path, seed: int, objective: str, k: int, metrics: dict) -> None:
    torch.manual_seed(seed)
    model = VAE(ModelConfig())
    images, _ = testset.load()
    model.init_output_bias(images[:2000].mean(0))
    save_checkpoint(model, _metadata(objective, k, metrics), path)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """vae-k1 (no metrics yet: 'evaluation pending') and iwae-k50 (with metrics), plus a training-state
    file that must be ignored."""
    d = tmp_path_factory.mktemp("checkpoints")
    _write_model(d / "vae-k1.safetensors", 0, "vae", 1, {})
    metrics = {"n_images": 100, "nll_quadrature": 180.5, "nll_quadrature_max_error": 1e-3, "nll_is5000": 180.6,
               "elbo": -190.0, "l5": -185.0, "l50": -182.0, "active_units": 2, "protocol": "synthetic test model"}
    _write_model(d / "iwae-k50.safetensors", 1, "iwae", 50, metrics)
    (d / "iwae-k50.resume.safetensors").write_bytes(b"training state, not a model")
    return d


@pytest.fixture
def app(model_dir, monkeypatch):
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(model_dir))

    def make(query: dict | None = None) -> AppTest:
        # A guard against a hung run, not a latency target (bench/ measures those): the Bounds page's subset curves
        # took over 60 s on a 2-core machine busy with training.
        at = AppTest.from_file(str(APP), default_timeout=180)
        at.query_params.update(query or {})
        return at.run()

    return make


def _assert_frame(at: AppTest) -> None:
    """No exception, and the shared sidebar drawn by the entrypoint."""
    assert not at.exception, [e.value for e in at.exception]
    for kind, keys in SIDEBAR_WIDGETS.items():
        present = {w.key for w in getattr(at.sidebar, kind)}
        assert keys <= present, (kind, keys - present)


def _open(at: AppTest, page: str) -> AppTest:
    """Switch pages the way the browser does; the page must run inside app.py's frame (not on its own,
    which Streamlit's legacy handling of a folder named pages/ can do)."""
    at.session_state[ENTRYPOINT_PAGE] = None
    at.switch_page(page).run()
    _assert_frame(at)
    assert [t.value for t in at.title] == [PAGES[page]]
    assert at.session_state[ENTRYPOINT_PAGE] == NAV_TITLES[page], "the page ran without the entrypoint"
    return at


def _chart_specs(at: AppTest) -> list[dict]:
    """The plotly figures the app sent, with Plotly's base64 typed arrays decoded to numpy."""

    def decode(value):
        if isinstance(value, dict) and set(value) <= {"dtype", "bdata", "shape"} and "bdata" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
            shape = value.get("shape")
            return array.reshape([int(s) for s in str(shape).split(",")]) if shape else array
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return [decode(_figure(chart)) for chart in _charts(at)]


def _figure(chart) -> dict:
    """The figure a chart component element was sent (its data holds the figure's JSON)."""
    return json.loads(json.loads(chart.proto.json)["figure"])


def _charts(at: AppTest) -> list:
    """Every plotly chart on the page, in page order. Each must be the app's chart component (explorer.chart) with
    only the trace types of the shipped plotly.js bundle, not ``st.plotly_chart`` (its fallback for other figures)."""
    found = []

    def walk(block) -> None:
        for node in block.children.values():
            if node.type == "plotly_chart" or (node.type == "bidi_component"
                                               and node.proto.component_name == explorer_chart.COMPONENT_NAME):
                found.append(node)
            elif hasattr(node, "children"):
                walk(node)

    walk(at.main)
    assert not [c for c in found if c.type == "plotly_chart"], "a chart fell back to st.plotly_chart"
    for c in found:
        types = explorer_chart.trace_types(_figure(c))
        assert types <= set(explorer_chart.BUNDLE_TRACES), types
    return found


def _assert_posterior_charts_not_blank(at: AppTest) -> None:
    specs = _chart_specs(at)
    assert len(specs) == 4  # per model: (q | p), then (q_IW at K | contours); the estimator draw is opt-in
    specs = specs[:4]
    for fixed, moving in (specs[:2], specs[2:]):
        heatmaps = [t for spec in (fixed, moving) for t in spec["data"] if t["type"] == "heatmap"]
        assert len(heatmaps) == 3
        assert len({(t["zmin"], t["zmax"]) for t in heatmaps}) == 1  # one colour scale per model
        for t in heatmaps:
            z = np.asarray(t["z"], dtype=float)
            assert np.isfinite(z).all() and z.max() > z.min(), "blank heatmap"


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


# ---------------------------------------------------------------------------------------------
# Pages


def test_home_page(app):
    at = app()
    _assert_frame(at)
    assert at.title[0].value == "IWAE visual explorer"
    assert len(at.get("page_link")) == len(PAGES)
    assert at.sidebar.selectbox(key="model_a").value == "vae-k1"
    assert at.sidebar.selectbox(key="model_b").value == "iwae-k50"
    # results from metadata where present; the evaluation command for the other
    assert any("Evaluation pending for vae-k1" in i.value for i in at.info)
    assert any("python -m iwae.evaluate checkpoints/*.safetensors --write" in c.value for c in at.code)
    tables = [m.value for m in at.markdown if m.value.startswith("| model | trained as |")]
    assert len(tables) == 2  # results table and checkpoint list, as static tables
    assert "| iwae-k50 |" in tables[0] and "vae-k1" not in tables[0]  # vae-k1 has no metrics yet
    assert all(f"| {name} |" in tables[1] for name in ("vae-k1", "iwae-k50"))
    assert at.query_params["a"] == "vae-k1" and at.query_params["k"] == "50"


def test_records_markdown_formats_columns_and_marks_missing_values():
    from explorer.widgets import records_markdown

    table = records_markdown([{"model": "a|b", "NLL": 86.123456, "error": 4.2e-4, "units": None},
                              {"model": "c", "NLL": -1.0, "error": None, "units": 2}], {"NLL": ".2f", "error": ".1e"})
    assert table.splitlines() == ["| model | NLL | error | units |", "|---|---|---|---|",
                                  "| a\\|b | 86.12 | 4.2e-04 | — |", "| c | -1.00 | — | 2 |"]
    assert records_markdown([]) == ""


def test_every_page_inside_the_frame_with_both_models(app):
    """Each page through app.py, sidebar present, with its charts; then the models swapped."""
    at = app({"image": "7", "k": "5"})
    at.session_state["bounds_subset"] = 10  # keep the subset average small in tests
    charts = {}
    for page in CORE_PAGES:
        _open(at, page)
        charts[page] = len(_charts(at))
        if page == "pages/latent.py":  # the scatter as sent: every test image, by digit
            scatter = _chart_specs(at)[0]
            digits = [t for t in scatter["data"] if t.get("meta") == "digit"]
            assert len(digits) == 10 and sum(len(t["x"]) for t in digits) == 10_000
        assert any("vae-k1" == h.value for h in at.subheader) and any("iwae-k50" == h.value for h in at.subheader)
    assert charts == {
        "pages/latent.py": 4,  # scatter + manifold per model
        "pages/posteriors.py": 4,  # (q | p) and (q_IW | contours) per model (the estimator draw is opt-in)
        "pages/resampling.py": 0,  # images only
        "pages/bounds.py": 6,  # image curve, subset curve, training curve per model
    }
    # the sidebar keeps its values across pages
    assert at.sidebar.number_input(key="image").value == 7
    assert at.sidebar.select_slider(key="K").value == 5
    # swap the models, and show one model in both columns (element keys must stay unique)
    for a, b in (("iwae-k50", "vae-k1"), ("iwae-k50", "iwae-k50")):
        at.sidebar.selectbox(key="model_a").set_value(a)
        at.sidebar.selectbox(key="model_b").set_value(b)
        at.run()
        _assert_frame(at)
        assert [h.value for h in at.subheader][:2] == [a, b]


@pytest.mark.parametrize("k", [1, 5000])
def test_posteriors_and_resampling_at_the_slider_extremes(app, k):
    at = app({"image": "3"})
    _open(at, "pages/posteriors.py")
    at.sidebar.select_slider(key="K").set_value(k).run()
    _assert_frame(at)
    text = _markdown(at)
    assert f"K = {k}" in text and "∫ q_IW dz" in text and "TV(q_IW, p)" in text and "KL(p ‖ q_IW)" in text
    _assert_posterior_charts_not_blank(at)
    assert at.query_params["k"] == str(k)
    _open(at, "pages/resampling.py")
    assert len(at.get("image")) == 1 + 2 * 4  # input; per model q tiles, SIR tiles, two mean images
    assert "Effective sample size" in _markdown(at)
    at.button(key="new_draws").click().run()
    _assert_frame(at)
    assert at.session_state["draw"] == 1


@pytest.fixture(scope="session")
def far_model_dir(model_dir, tmp_path_factory) -> Path:
    """A model whose encoder puts a narrow q(z|x) at (3, -3) for every image, far from where p(z|x) lies
    (near the origin): q and p do not overlap at all."""
    d = tmp_path_factory.mktemp("far-checkpoints")
    shutil.copy(model_dir / "iwae-k50.safetensors", d / "iwae-k50.safetensors")
    torch.manual_seed(2)
    model = VAE(ModelConfig())
    images, _ = testset.load()
    model.init_output_bias(images[:2000].mean(0))
    with torch.no_grad():
        model.encoder[-1].weight.zero_()
        model.encoder[-1].bias.copy_(torch.tensor([3.0, -3.0, 2 * np.log(0.05), 2 * np.log(0.05)]))
    save_checkpoint(model, _metadata("vae", 1, {}), d / "vae-k1.safetensors")
    return d


@pytest.mark.parametrize("k", [1, 5000])
def test_q_and_p_that_do_not_overlap(far_model_dir, monkeypatch, k):
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(far_model_dir))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update({"k": str(k)})
    at.run()
    _open(at, "pages/posteriors.py")
    _assert_posterior_charts_not_blank(at)
    assert "| TV(q, p) | 1.0000 |" in _markdown(at)
    _open(at, "pages/resampling.py")
    _open(at, "pages/latent.py")


def test_changing_the_image_updates_pages_and_url(app):
    at = app()
    _open(at, "pages/posteriors.py")
    at.sidebar.number_input(key="image").set_value(123).run()
    _assert_frame(at)
    assert "#123" in _markdown(at)
    assert at.query_params["image"] == "123"
    at.sidebar.button(key="next_image").click().run()
    assert at.sidebar.number_input(key="image").value == 124
    at.sidebar.button(key="prev_image").click().run()
    assert at.sidebar.number_input(key="image").value == 123
    _open(at, "pages/latent.py")
    assert at.sidebar.number_input(key="image").value == 123  # kept across pages
    at.number_input(key="z1").set_value(1.5).run()  # decode a typed-in z
    _assert_frame(at)


def test_every_digit_filter(app):
    _, labels = testset.load()
    at = app()
    _open(at, "pages/latent.py")
    for d in view.DIGIT_CHOICES:
        at.sidebar.selectbox(key="digit").set_value(d).run()
        _assert_frame(at)
        index = at.sidebar.number_input(key="image").value
        if d != "any":
            assert labels[index] == int(d)
            at.sidebar.button(key="random_image").click().run()
            _assert_frame(at)
            assert labels[at.sidebar.number_input(key="image").value] == int(d)
        assert at.query_params["digit"] == d


def test_url_state_is_restored(app):
    at = app({"a": "iwae-k50", "b": "vae-k1", "image": "42", "k": "5000", "seed": "9", "digit": "4", "math": "1"})
    _assert_frame(at)
    assert not at.warning
    assert at.sidebar.selectbox(key="model_a").value == "iwae-k50"
    assert at.sidebar.number_input(key="image").value == 42
    assert at.sidebar.select_slider(key="K").value == 5000
    assert at.sidebar.number_input(key="seed").value == 9
    assert at.sidebar.selectbox(key="digit").value == "4"
    assert at.sidebar.toggle(key="show_math").value is True


def test_invalid_url_values_fall_back_with_warnings(app):
    at = app({"a": "no-such-model", "image": "99999", "k": "7", "seed": "-1", "digit": "x", "math": "maybe"})
    _assert_frame(at)
    assert len(at.warning) == 6
    assert at.sidebar.selectbox(key="model_a").value == "vae-k1"
    assert at.sidebar.number_input(key="image").value == 0
    assert at.sidebar.select_slider(key="K").value == view.DEFAULT_K
    assert at.query_params["image"] == "0"  # the URL is rewritten with valid values
    _open(at, "pages/posteriors.py")
    assert not at.warning  # said once


def test_mathematics_toggle_opens_the_expanders(app):
    at = app()
    _open(at, "pages/posteriors.py")
    assert len(at.latex) >= 3  # formulas are there (in a closed expander)
    assert at.expander[0].proto.expanded is False
    at.sidebar.toggle(key="show_math").set_value(True).run()
    assert at.expander[0].proto.expanded is True


def test_no_checkpoints_explains_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert "No usable model checkpoint" in at.error[0].value
    commands = "\n".join(c.value for c in at.code)
    assert results.train_command("iwae-k50") in commands  # every default model's command, with the zoo's protocol
    assert "--objective iwae --k 50 --estimator standard --epochs 60" in commands
    assert "python -m iwae.evaluate" in commands
    at.switch_page("pages/posteriors.py").run()  # a deep link explains the same
    assert not at.exception
    assert "No usable model checkpoint" in at.error[0].value


def test_toy_targets_page_fits_live_and_changes_with_k(app):
    """The toy page through app.py: both fits, the five-panel figure; another target and K rerun cleanly."""
    at = app({"k": "5"})
    _open(at, "pages/toy.py")
    assert len(_charts(at)) == 2  # the densities and the fits' traces
    heatmaps = [t for t in _chart_specs(at)[0]["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 5 and all(np.isfinite(np.asarray(t["z"], dtype=float)).all() for t in heatmaps)
    at.selectbox(key="toy_target").set_value("mixture")
    at.select_slider(key="toy_k").set_value(100)
    at.run()
    _assert_frame(at)
    assert "K = 100" in _markdown(at) + "\n".join(c.value for c in at.caption)


def test_bounds_page_shows_the_gradient_snr_file_or_says_what_is_wrong(model_dir, tmp_path, monkeypatch):
    for name in ("vae-k1.safetensors", "iwae-k50.safetensors"):
        shutil.copy(model_dir / name, tmp_path / name)
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(tmp_path))
    shutil.copy(ROOT / "checkpoints" / "gradient-snr.json", tmp_path / "gradient-snr.json")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["bounds_subset"] = 10
    at.run()
    _open(at, "pages/bounds.py")
    specs = _chart_specs(at)
    assert len(specs) == 7  # six per-model charts, then the SNR figure
    snr_spec = specs[-1]
    assert snr_spec["layout"]["xaxis"]["type"] == "log" and snr_spec["layout"]["yaxis"]["type"] == "log"
    (tmp_path / "gradient-snr.json").write_text('{"protocol": {}}')
    at.run()
    _assert_frame(at)
    assert len(_charts(at)) == 6
    assert any("gradient_snr.py" in w.value or "gradient_snr.py" in c.value for w in at.warning for c in at.code)


def _number(at: AppTest, quantity: str) -> list[str]:
    """The value column of every numbers-table row named ``quantity`` (one per model column)."""
    return [line.split("|")[2].strip() for m in at.markdown for line in m.value.splitlines()
            if line.startswith(f"| {quantity} |")]


def test_own_digit_on_every_page_then_back_to_the_test_image(app):
    """A digit carried in the URL (x=code) replaces the test image on every page; with the bits of test
    image #3 it gives exactly test image #3's exact (quadrature) numbers; the sidebar button goes back to the
    test index."""
    images, _ = testset.load()
    code = image_ref.encode_digit(images[3].numpy())
    reference = app({"image": "3", "k": "5"})
    _open(reference, "pages/posteriors.py")
    at = app({"x": code, "image": "8", "k": "5"})
    at.session_state["bounds_subset"] = 10
    for page in MODEL_PAGES:
        _open(at, page)
        text = _markdown(at) + "\n".join(c.value for c in at.caption)
        assert "your own digit" in text.lower(), page
        assert "#8" not in _markdown(at), page  # the test image is not what is shown
        if page == "pages/posteriors.py":
            _assert_posterior_charts_not_blank(at)
            assert _number(at, "log p(x)") == _number(reference, "log p(x)") and len(_number(at, "log p(x)")) == 2
            assert _number(at, "TV(q, p)") == _number(reference, "TV(q, p)")  # exact on the grid, no sampling
    assert at.query_params["x"] == code
    assert any("your own digit" in i.value for i in at.sidebar.info)
    at.sidebar.button(key="back_to_test").click().run()
    _assert_frame(at)
    assert "x" not in at.query_params and at.query_params["image"] == "8"
    assert any("No digit of yours yet" in i.value and "#8" in i.value for i in at.info)  # on the digit page


def test_choosing_a_test_image_leaves_the_own_digit(app):
    code = image_ref.encode_digit(np.eye(28, dtype=np.float32).reshape(-1))
    at = app({"x": code, "image": "8"})
    _open(at, "pages/resampling.py")
    at.sidebar.button(key="next_image").click().run()
    _assert_frame(at)
    assert "x" not in at.query_params and at.query_params["image"] == "9" and "#9" in _markdown(at)


def test_digit_page_without_a_digit_says_so(app):
    at = app({"image": "5"})
    _open(at, "pages/digit.py")
    assert any("No digit of yours yet" in i.value and "#5" in i.value for i in at.info)
    assert at.button(key="use_drawing").label == "Use this drawing"


def test_digit_page_with_a_digit_shows_both_models(app):
    images, _ = testset.load()
    at = app({"x": image_ref.encode_digit(images[0].numpy())})
    _open(at, "pages/digit.py")
    values = _number(at, "log p(x)")
    assert len(values) == 2 and all(float(v) < 0 for v in values)
    elbo = [float(v) for v in _number(at, "ELBO = L₁")]
    assert all(e < float(v) for e, v in zip(elbo, values, strict=True))  # the ELBO bounds log p(x) from below


class _Payload:
    """Unpickling this creates a marker file: proof that something ran pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_checkpoint(kind: str, good: Path, path: Path, marker: Path) -> str:
    """Write a bad vae-k1 checkpoint of one kind; returns a phrase the app's message must contain."""
    from safetensors.torch import load_file, save_file

    from iwae.checkpoints import FORMAT, read_metadata

    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return "could not be loaded"
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return "not a readable safetensors file"
    if kind == "pickle with a payload":
        torch.save({"payload": _Payload(marker)}, path)
        return "not a readable safetensors file"
    meta = read_metadata(good)
    tensors = load_file(str(good))
    if kind == "wrong shapes":
        tensors["encoder.0.weight"] = torch.zeros(100, 784)
        save_file(tensors, str(path), metadata={"format": FORMAT, "metadata": json.dumps(meta)})
        return "encoder.0.weight"
    if kind == "missing metadata key":
        del meta["config"]
        save_file(tensors, str(path), metadata={"format": FORMAT, "metadata": json.dumps(meta)})
        return "config"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "pickle with a payload", "wrong shapes",
                                  "missing metadata key"])
def test_every_kind_of_bad_checkpoint_is_reported_and_the_other_model_works(model_dir, tmp_path, monkeypatch, kind):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(model_dir / "iwae-k50.safetensors", folder / "iwae-k50.safetensors")
    marker = tmp_path / "pwned"
    phrase = _bad_checkpoint(kind, model_dir / "vae-k1.safetensors", folder / "vae-k1.safetensors", marker)
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(folder))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    _assert_frame(at)
    warnings = [w.value for w in at.warning if "vae-k1" in w.value and "could not be loaded" in w.value]
    assert len(warnings) == 1 and phrase in warnings[0], (kind, [w.value for w in at.warning])
    assert [o.split(" ")[0] for o in at.sidebar.selectbox(key="model_a").options] == ["iwae-k50"]
    _open(at, "pages/posteriors.py")
    _assert_posterior_charts_not_blank(at)
    assert not marker.exists(), "a checkpoint file was unpickled"


def test_one_corrupt_checkpoint_is_reported_and_the_others_work(model_dir, tmp_path, monkeypatch):
    shutil.copy(model_dir / "iwae-k50.safetensors", tmp_path / "iwae-k50.safetensors")
    (tmp_path / "vae-k1.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    _assert_frame(at)
    assert any("vae-k1" in w.value and "could not be loaded" in w.value for w in at.warning)
    assert [o.split(" ")[0] for o in at.sidebar.selectbox(key="model_a").options] == ["iwae-k50"]
    _open(at, "pages/posteriors.py")
    assert len(_charts(at)) == 4  # the good model, in both columns
    assert any("vae-k1" in w.value for w in at.warning)


def test_results_caption_states_the_seed_noise_where_the_seed_models_are_evaluated(model_dir, tmp_path, monkeypatch):
    for f in model_dir.glob("*.safetensors"):
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not any("Seed noise" in c.value for c in at.caption)  # no seed models: no claim about noise
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for name, folder, shift in (("vae-k1", tmp_path, 0.0), ("vae-k1-seed2", seeds, 2.0), ("vae-k1-seed3", seeds, 1.0)):
        log_px = np.array([-100.0, -110.0]) - shift
        np.savez(folder / f"{name}.per-image.npz", log_px_quadrature=log_px, **{"is": log_px - 1})
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    _assert_frame(at)
    notes = [c.value for c in at.caption if "Seed noise" in c.value]
    assert len(notes) == 1 and "vae-k1: 1.00 (quadrature), 1.00 (IS)" in notes[0], notes


def test_instructive_presets_when_present(model_dir, tmp_path, monkeypatch):
    for f in model_dir.glob("*.safetensors"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / INSTRUCTIVE_FILE).write_text(json.dumps(
        {"multimodal": [3, 20000], "largest_gap": [11], "vae_iwae_disagree": "oops", "protocol": "test presets"}))
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    _assert_frame(at)
    preset = at.sidebar.selectbox(key="preset")
    assert preset.options and len(preset.options) == 2  # 20000 is out of range, "oops" not a list
    preset.set_value("largest_gap:11").run()
    _assert_frame(at)
    assert at.sidebar.number_input(key="image").value == 11


def test_no_preset_selector_without_the_file(app):
    at = app()
    assert "preset" not in {w.key for w in at.sidebar.selectbox}


# ---------------------------------------------------------------------------------------------
# The catalogue behind the app (no Streamlit)


def test_discover_skips_training_state_and_temporary_files(model_dir, tmp_path):
    assert [p.name for p in catalog.discover(model_dir)] == ["iwae-k50.safetensors", "vae-k1.safetensors"]
    (tmp_path / ".vae-k1.safetensors.abc.tmp").write_bytes(b"")
    (tmp_path / ".hidden.safetensors").write_bytes(b"")
    assert catalog.discover(tmp_path) == []
    assert catalog.discover(tmp_path / "missing") == []


def test_load_catalog_collects_errors(model_dir, tmp_path):
    """The app's own loading (explorer.data.load_catalog, cached per path and mtime): a broken file and a model the
    explorer cannot show are reported, the good model loads."""
    shutil.copy(model_dir / "vae-k1.safetensors", tmp_path / "vae-k1.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 100)
    torch.manual_seed(0)
    small = VAE(ModelConfig(input_dim=64))
    meta = _metadata("iwae", 5, {})
    meta["config"] = small.config.to_dict()
    save_checkpoint(small, meta, tmp_path / "digits.safetensors")
    cat = explorer_data.load_catalog(tmp_path)
    assert cat.names == ["vae-k1"]
    assert set(cat.errors) == {"broken", "digits"}
    assert "64-pixel" in cat.errors["digits"] and str(tmp_path / "broken.safetensors") in cat.errors["broken"]


def test_query_round_trip_and_defaults():
    names = ["iwae-k5", "iwae-k50", "vae-k1"]
    state, warnings = view.parse_query({}, names)
    assert (state.model_a, state.model_b, state.image, state.k, state.seed) == ("vae-k1", "iwae-k50", 0, 50, 0)
    assert not warnings
    state = view.ViewState("iwae-k5", "vae-k1", 9999, "3", 5000, 123, True)
    again, warnings = view.parse_query(view.to_query(state), names)
    assert again == state and not warnings
    _, warnings = view.parse_query({"k": ["5", "nope"], "image": "-3", "seed": str(2**40)}, names)
    assert len(warnings) == 3  # the last of a repeated key counts
    assert view.default_models(["only"]) == ("only", "only")
    assert view.default_models(["iwae-k5", "vae-k50"]) == ("iwae-k5", "vae-k50")


def test_train_command():
    """The commands the app shows for a missing model train it with the zoo's one protocol, and parse."""
    from iwae.train import parse_args
    from iwae.zoo import PROTOCOL

    for name in ("vae-k1", "iwae-k50-dreg", "vae-k1-200ep", "something-else"):
        command = results.train_command(name)
        args = parse_args(command.split()[3:])
        expected = name if name != "something-else" else "iwae-k50"
        assert args.out.name == f"{expected}.safetensors"
        assert args.schedule == PROTOCOL["schedule"] and args.batch_size == PROTOCOL["batch_size"]
        assert args.seed == 1
    assert parse_args(results.train_command("iwae-k50-dreg").split()[3:]).estimator == "dreg"
    assert parse_args(results.train_command("vae-k1-200ep").split()[3:]).epochs == 200
    assert parse_args(results.train_command("vae-k1").split()[3:]).epochs == PROTOCOL["epochs"]


SEED_PROBE = """
import json, sys, torch
from iwae.rng import generator, stable_seed
parts = (1, "pool", 3)
print(json.dumps({"seed": stable_seed(*parts), "draws": torch.rand(4, generator=generator(*parts)).tolist(),
                  "hash": hash("pool")}))
"""


def test_stable_seed_is_the_same_in_every_process():
    """The property claimed: equal parts give equal seeds and draws in other processes, whose string hashes differ
    (a seed built on Python's hash would fail here)."""
    from iwae.rng import stable_seed

    runs = []
    for salt in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", SEED_PROBE], cwd=ROOT, capture_output=True, text=True, check=True,
                             env=os.environ | {"PYTHONHASHSEED": salt})
        runs.append(json.loads(out.stdout))
    assert runs[0]["hash"] != runs[1]["hash"]  # the two processes really salt strings differently
    assert runs[0]["seed"] == runs[1]["seed"] == stable_seed(1, "pool", 3)
    assert runs[0]["draws"] == runs[1]["draws"]
    assert stable_seed(1, "pool", 3) != stable_seed(1, "pool", 4) and 0 <= stable_seed("x") < 2**64


def test_every_script_run_flushes_denormals():
    """The setting belongs to the thread, and Streamlit runs each script run in a new thread: a fresh thread computes
    denormals until explorer.threads.start_script_run (what every run calls first) flushes them to zero."""
    seen = {}

    def script_run() -> None:
        tiny = torch.tensor([1e-38], dtype=torch.float32)
        seen["before"] = (tiny / 10).item()
        threads.start_script_run()
        seen["after"] = (tiny / 10).item()

    worker = threading.Thread(target=script_run)
    worker.start()
    worker.join()
    assert seen["before"] > 0  # a fresh thread: 1e-39 is a denormal, kept
    assert seen["after"] == 0.0


def test_the_streamlit_internals_of_the_deep_link_hand_over(tmp_path):
    """explorer/legacy.py is the one module that reaches into Streamlit; this fails the day an upgrade changes what it
    relies on: (1) a folder named pages/ beside the entrypoint switches the server to the legacy handling, decided
    once in the class attribute ``PagesManager.uses_pages_directory``, (2) the script runner runs a page file alone
    while it is set, (3) st.navigation clears it as legacy.leave_legacy_mode does, (4) the run context names the
    entrypoint as its main script."""
    from streamlit.commands import navigation
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.runtime.scriptrunner_utils.script_run_context import ScriptRunContext

    (tmp_path / "pages").mkdir()
    (tmp_path / "app.py").write_text("")
    saved = PagesManager.uses_pages_directory
    try:
        PagesManager.uses_pages_directory = None
        PagesManager(str(tmp_path / "app.py"))
        assert PagesManager.uses_pages_directory is True  # (1)
        legacy.leave_legacy_mode()
        assert PagesManager.uses_pages_directory is False
    finally:
        PagesManager.uses_pages_directory = saved
    runner = inspect.getsource(script_runner)
    assert "if PagesManager.uses_pages_directory:" in runner and "_mpa_v1(self._main_script_path)" in runner  # (2)
    assert "PagesManager.uses_pages_directory = False" in inspect.getsource(navigation.navigation)  # (3)
    assert "main_script_path" in {f.name for f in dataclasses.fields(ScriptRunContext)}  # (4)
    assert legacy.main_script() is None  # outside a script run


def test_a_page_file_run_without_the_entrypoint_draws_the_frame(app, model_dir):
    """Streamlit's legacy pages/ handling may run a page file directly (a fresh server's first run of a
    deep link whose path matches a file name): the page then draws the sidebar itself."""
    at = AppTest.from_file(str(ROOT / "pages" / "posteriors.py"), default_timeout=60).run()
    _assert_frame(at)
    assert [t.value for t in at.title] == ["Posteriors"]
    assert ENTRYPOINT_PAGE not in at.session_state


def test_the_warm_up_leaves_no_default_view_to_compute(app, model_dir, monkeypatch):
    """explorer.warm computes the default state's views in the background after the server's first run: then the
    Posteriors, Resampling and Bounds pages' first views (default pair, image, K, seed) run no quadrature, draw no
    pool and sample no SIR draws of their own. Without the warm-up they do (the control)."""
    import streamlit as st

    from explorer import warm
    from iwae import posterior, sir

    calls: list[str] = []
    for module, name in ((posterior, "image_grid"), (posterior, "proposal_pool"), (sir, "sir_sample")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **kw: (calls.append(_n), _f(*a, **kw))[1])

    def first_views() -> list[str]:
        calls.clear()
        for page in ("pages/posteriors.py", "pages/resampling.py", "pages/bounds.py"):
            _open(app(), page)
        return sorted(set(calls))

    st.cache_data.clear()
    assert first_views() == ["image_grid", "proposal_pool", "sir_sample"]  # the control: computed on first view
    st.cache_data.clear()
    warm.warm_defaults(explorer_data.load_catalog(model_dir))
    assert first_views() == []


def test_the_warm_up_builds_every_models_global_grid(model_dir, tmp_path, monkeypatch):
    """A pair change to a model outside the default pair waits for no global quadrature grid (0.3 s per model): the
    warm-up builds every model's. Without it, the grid is built on first use (the control)."""
    from explorer import views, warm
    from iwae import quadrature

    for f in model_dir.glob("*.safetensors"):
        shutil.copy(f, tmp_path / f.name)
    _write_model(tmp_path / "vae-k50.safetensors", 2, "vae", 50, {})  # in no default pair
    cat = explorer_data.load_catalog(tmp_path)
    third = cat.checkpoints["vae-k50"]
    built: list[int] = []
    original = quadrature.global_grid
    monkeypatch.setattr(quadrature, "global_grid", lambda *a, **kw: (built.append(1), original(*a, **kw))[1])

    views.global_grid.clear()
    views.global_grid(third.model, explorer_data.model_key(third))
    assert built == [1]  # the control
    views.global_grid.clear()
    warm.warm_defaults(cat)
    built.clear()
    for ckpt in cat.checkpoints.values():
        views.global_grid(ckpt.model, explorer_data.model_key(ckpt))
    assert len(cat.checkpoints) == 3 and built == []


def test_a_class_of_students_images_stay_cached_and_the_caches_stay_bounded(model_dir, monkeypatch):
    """30 students, each with two models and three images in view: every image's window grid, log p(x) and pool of
    draws is computed once, so a K change finds them (at 32 entries the students' image changes evicted each other's,
    and a K change computed them again under bench/load_sessions.py). Past CLASS_ENTRIES more, the oldest is computed
    again: the memory stays bounded. The computations are stand-ins that count calls; the caches are the app's."""
    from explorer import views
    from iwae import posterior, quadrature

    calls: list[str] = []
    monkeypatch.setattr(quadrature, "global_grid", lambda model: "grid")
    monkeypatch.setattr(quadrature, "refine_image", lambda model, grid, x: (
        calls.append("log_px"), dataclasses.make_dataclass("Q", ["log_px", "error_estimate"])(-100.0, 1e-3))[1])
    monkeypatch.setattr(posterior, "image_grid", lambda model, grid, x, log_px: (calls.append("grid"), log_px)[1])
    monkeypatch.setattr(posterior, "proposal_pool", lambda model, x, size, generator: (calls.append("pool"), size)[1])
    cat = explorer_data.load_catalog(model_dir)
    models = [(c.model, explorer_data.model_key(c)) for c in cat.checkpoints.values()]
    assert len(models) == 2

    def views_of(student: int, image: int) -> None:
        ref = 1000 + 3 * student + image  # test images the evaluation file does not cover: log p(x) is computed
        for model, key in models:
            views.image_grid(model, key, ref)
            views.proposal_pool(model, key, ref, 0)

    for cached in (views.image_log_px, views.image_grid, views.proposal_pool):
        cached.clear()
    for student in range(30):
        for image in range(3):
            views_of(student, image)
    assert len(calls) == 30 * 3 * 2 * 3 <= 3 * views.CLASS_ENTRIES
    calls.clear()
    views_of(0, 0)  # the first student's first image, after every other student's three
    assert calls == []
    for student in range(30, 30 + views.CLASS_ENTRIES // 2):  # as many (model, image) views again: the cache is full
        views_of(student, 0)
    calls.clear()
    views_of(0, 1)
    assert sorted(calls) == ["grid", "grid", "log_px", "log_px", "pool", "pool"]


def test_bounds_page_takes_log_px_from_the_evaluation_of_these_weights(model_dir, tmp_path, monkeypatch):
    """A test image's quadrature log p(x) on the Bounds page comes from the model's per-image evaluation file when
    the file records these weights (the evaluation's own number, no quadrature of the page's); a file recording other
    weights is ignored and the number computed."""
    from explorer import views
    from iwae import evaluate
    from iwae.checkpoints import load_checkpoint, weights_digest

    def bounds_captions(folder: Path, digest_of) -> str:
        for name in ("vae-k1", "iwae-k50"):
            shutil.copy(model_dir / f"{name}.safetensors", folder)
            ckpt = load_checkpoint(folder / f"{name}.safetensors")
            numbers = {"log_px_quadrature": np.full(5, -123.456), "quadrature_error": np.full(5, 4.2e-4)}
            evaluate.save_per_image(ckpt.path, numbers, digest_of(ckpt.model))
        monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(folder))
        at = AppTest.from_file(str(APP), default_timeout=180).run()
        at.session_state["bounds_subset"] = min(views.SUBSET_CHOICES)  # the page's cheapest average
        return " ".join(c.value for c in _open(at, "pages/bounds.py").caption)

    (tmp_path / "same").mkdir()
    assert bounds_captions(tmp_path / "same", weights_digest).count("log p(x) = -123.46 (error 4.2e-04)") == 2
    (tmp_path / "other").mkdir()
    captions = bounds_captions(tmp_path / "other", lambda model: "0" * 64)
    assert "-123.46" not in captions and captions.count("dashed: quadrature log p(x) = ") == 2
