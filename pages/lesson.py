"""Lesson: the paper's story in steps, each a complete state (view, models, image, K) with a question for the class;
Back / Next, the step in the URL (?step=N), "Open in the explorer" carrying the state to the full page."""

from __future__ import annotations

import explorer

cat, state = explorer.page_frame()
ui = explorer.lesson_ui

step = ui.current_step(cat)
ui.navigation(cat, step)
ui.header(cat, state, step)
ui.figures_of(cat, state, step)
