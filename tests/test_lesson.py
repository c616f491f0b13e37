"""The lesson (explorer/lesson.py, explorer/lesson_ui.py, pages/lesson.py), the presenter view, the estimator section
and the per-image CSV: the rules without Streamlit, the pages with AppTest through app.py (synthetic checkpoints in a
temporary folder, as in tests/test_app.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import downloads, lesson
from explorer import state as view
from explorer.presets import INSTRUCTIVE_FILE
from iwae import catalog, testset, toy
from iwae.checkpoints import load_checkpoint, save_checkpoint
from iwae.evaluate import per_image_path
from iwae.model import VAE, ModelConfig

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"

pytestmark = pytest.mark.skipif(not testset.DEFAULT_PATH.is_file(), reason="the shipped binarized test set is missing")


def _write_model(path: Path, seed: int, objective: str, k: int) -> None:
    torch.manual_seed(seed)
    model = VAE(ModelConfig())
    images, _ = testset.load()
    model.init_output_bias(images[:2000].mean(0))
    metadata = {"config": ModelConfig().to_dict(), "objective": objective, "k": k, "estimator": "standard",
                "epochs": 1, "seed": seed, "data": {"dataset": "synthetic test model"},
                "history": [{"epoch": 1, "lr": 1e-3, "train_bound": -200.0, "test_bound": -205.0,
                             "test_images": 100, "seconds": 1.0}],
                "metrics": {"protocol": f"synthetic protocol of {path.stem}"}}
    save_checkpoint(model, metadata, path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """vae-k1 and iwae-k50 with per-image numbers (the VAE's median log p(x) is at image 7) and presets."""
    d = tmp_path_factory.mktemp("lesson-checkpoints")
    _write_model(d / "vae-k1.safetensors", 0, "vae", 1)
    _write_model(d / "iwae-k50.safetensors", 1, "iwae", 50)
    n = 21
    log_px = -150.0 - np.arange(n, dtype=np.float64)
    log_px[[7, 10]] = log_px[[10, 7]]  # the median, -160, at image 7
    for name, shift in (("vae-k1", 0.0), ("iwae-k50", 2.0)):
        np.savez(per_image_path(d / f"{name}.safetensors"), log_px_quadrature=log_px + shift,
                 quadrature_error=np.full(n, 1e-3), **{"is": log_px + shift - 0.1}, elbo=log_px + shift - 5,
                 l5=log_px + shift - 2, l50=log_px + shift - 1)
    (d / INSTRUCTIVE_FILE).write_text(json.dumps({
        "protocol": "test presets", "multimodal": [11, 12], "largest_gap": [13], "vae_iwae_disagree": [14],
        "details": {"11": {"label": 1, "second_mode_share": {"vae-k1": 0.3, "iwae-k50": 0.1}}},
    }))
    return d


@pytest.fixture
def app(model_dir, monkeypatch):
    monkeypatch.setenv(catalog.CHECKPOINT_DIR_ENV, str(model_dir))

    def make(query: dict | None = None, page: str | None = "pages/lesson.py") -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=300)
        at.query_params.update(query or {})
        if page:
            at.switch_page(page)
        return at.run()

    return make


def _title(at: AppTest) -> str:
    """The step's heading ("### N. title" markdown)."""
    return next(m.value.removeprefix("### ") for m in at.markdown if m.value.startswith("### "))


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ---------------------------------------------------------------------------------------------
# The steps (no Streamlit)


def test_steps_are_complete_states():
    assert len(lesson.STEPS) >= 7
    for step in lesson.STEPS:
        assert step.view in lesson.VIEW_PAGES and (ROOT / lesson.VIEW_PAGES[step.view]).is_file()
        assert step.image in lesson.RULES
        assert step.k in (toy.K_CHOICES if step.view == "toy" else view.K_CHOICES)
        sentences = len(re.findall(r"[.!?](?:\s|$)", re.sub(r"\$[^$]*\$", "x", step.text)))
        assert 2 <= sentences <= 4, (step.title, sentences)
        assert step.question.strip().endswith("?") and step.question.count("?") == 1, step.title
        if step.view == "toy":
            assert step.toy_target in toy.TARGETS


def test_images_come_from_the_computations(model_dir):
    models = ("vae-k1", "iwae-k50")
    typical = lesson.choose_image(lesson.TYPICAL, model_dir, models, 10_000)
    assert typical.index == 7 and "median" in typical.reason
    multi = lesson.choose_image(lesson.MULTIMODAL, model_dir, models, 10_000)
    assert multi.index == 11 and "30%" in multi.reason
    assert lesson.choose_image(lesson.LARGEST_GAP, model_dir, models, 10_000).index == 13
    assert lesson.choose_image(lesson.DISAGREE, model_dir, models, 10_000).index == 14


def test_images_without_presets_or_per_image_numbers(tmp_path, model_dir):
    for f in model_dir.glob("*.safetensors"):
        shutil.copy(f, tmp_path / f.name)
    choice = lesson.choose_image(lesson.MULTIMODAL, tmp_path, ("vae-k1", "iwae-k50"), 10_000)
    assert choice.index == 0 and "no 'posterior with several modes' preset" in choice.reason
    shutil.copy(per_image_path(model_dir / "vae-k1.safetensors"), per_image_path(tmp_path / "vae-k1.safetensors"))
    assert lesson.choose_image(lesson.TYPICAL, tmp_path, ("vae-k1", "iwae-k50"), 10_000).index == 7


def test_step_models_fall_back_to_loaded_ones():
    step = lesson.STEPS[-2]  # iwae-k50 beside iwae-k50-dreg
    assert lesson.step_models(step, ["iwae-k50", "iwae-k50-dreg", "vae-k1"]) == ("iwae-k50", "iwae-k50-dreg")
    assert lesson.step_models(step, ["iwae-k50", "vae-k1"]) == ("iwae-k50", "vae-k1")


def test_parse_step():
    assert lesson.parse_step(None) == (1, None)
    assert lesson.parse_step("4") == (4, None)
    for bad in ("0", "x", str(len(lesson.STEPS) + 1), "-2"):
        step, warning = lesson.parse_step(bad)
        assert step == 1 and warning and bad in warning


def test_per_image_csv_has_the_protocol_and_every_number(model_dir):
    ckpts = [load_checkpoint(model_dir / "vae-k1.safetensors"), load_checkpoint(model_dir / "iwae-k50.safetensors")]
    labels = np.arange(21) % 10
    text = downloads.per_image_csv(ckpts, labels, downloads.protocol_lines(ckpts, 1234))
    lines = text.splitlines()
    comments = [line for line in lines if line.startswith("#")]
    assert any("seed 1234" in c for c in comments) and any("synthetic protocol of vae-k1" in c for c in comments)
    header = lines[len(comments)].split(",")
    assert header[:2] == ["image", "digit"] and "iwae-k50:log_px_is5000" in header and "vae-k1:l50" in header
    rows = lines[len(comments) + 1:]
    assert len(rows) == 21
    row7 = dict(zip(header, rows[7].split(","), strict=True))
    assert float(row7["iwae-k50:log_px_quadrature"]) == pytest.approx(-160.0 + 2.0, abs=1e-6)
    assert downloads.available(ckpts) and downloads.csv_maker(ckpts, labels, 1234)() == text


# ---------------------------------------------------------------------------------------------
# The pages through app.py


def test_walk_the_lesson_with_next(app):
    at = app({"present": "1"})
    _ok(at)
    for number in range(1, len(lesson.STEPS) + 1):
        step = lesson.STEPS[number - 1]
        assert _title(at) == f"{number}. {step.title}"
        assert at.query_params["step"] == [str(number)] or at.query_params["step"] == str(number)
        assert at.session_state["present"] is True
        if step.view != "toy":
            assert at.sidebar.select_slider(key="K").value == step.k
        if number < len(lesson.STEPS):
            at.button(key="lesson_next").click().run()
            _ok(at)
    assert at.button(key="lesson_next").disabled
    at.button(key="lesson_back").click().run()
    _ok(at)
    assert _title(at).startswith(f"{len(lesson.STEPS) - 1}.")


def test_a_step_from_its_url_alone_and_k_moved_within_it(app):
    at = app({"step": "4"})
    _ok(at)
    assert _title(at) == f"4. {lesson.STEPS[3].title}"
    assert at.sidebar.number_input(key="image").value == 11  # the multimodal preset
    assert at.sidebar.select_slider(key="K").value == lesson.STEPS[3].k
    at.sidebar.select_slider(key="K").set_value(5).run()
    _ok(at)
    assert _title(at).startswith("4.") and at.sidebar.select_slider(key="K").value == 5


def test_invalid_step_falls_back_with_a_warning(app):
    at = app({"step": "99"})
    _ok(at)
    assert _title(at).startswith("1.")
    assert any("step='99'" in w.value for w in at.warning)


def test_estimator_section_and_new_draw(app):
    at = app({"k": "20"}, page="pages/posteriors.py")
    _ok(at)
    assert any(h.value == "Inspect the estimator" for h in at.header)
    assert "effective sample size" not in "\n".join(m.value for m in at.markdown)  # opt-in: not drawn on a K change
    at.toggle(key="estimator_show").set_value(True).run()
    _ok(at)
    text = "\n".join(m.value for m in at.markdown)
    assert "effective sample size" in text and "L_K = log mean w, K = 20" in text
    before = text
    at.button(key="estimator_new_draw").click().run()
    _ok(at)
    assert "\n".join(m.value for m in at.markdown) != before


def test_presenter_toggle_writes_the_url(app):
    at = app(page=None)
    _ok(at)
    assert "present" not in at.query_params
    at.sidebar.toggle(key="present").set_value(True).run()
    _ok(at)
    assert "present" in at.query_params


def test_the_warm_up_computes_every_step(app, model_dir, monkeypatch):
    """explorer.warm computes each step's views in the step's own state (lesson_ui.warm_step): then showing the
    steps with the quadrature, a pool, SIR draws or an estimator draw (3 to 7) computes none of those again. Without
    it they do (the control)."""
    import streamlit as st

    from explorer import data, warm
    from explorer import estimator as explorer_estimator
    from iwae import posterior, sir

    calls: list[str] = []
    for module, name in ((posterior, "image_grid"), (posterior, "proposal_pool"), (sir, "sir_sample"),
                         (explorer_estimator, "draw_log_weights")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **kw: (calls.append(_n), _f(*a, **kw))[1])

    def show_steps() -> list[str]:
        calls.clear()
        for number in range(3, 8):
            _ok(app({"step": str(number)}))
        return sorted(set(calls))

    st.cache_data.clear()
    assert show_steps() == ["draw_log_weights", "image_grid", "proposal_pool", "sir_sample"]
    st.cache_data.clear()
    warm.warm_defaults(data.load_catalog(model_dir))
    assert show_steps() == []
