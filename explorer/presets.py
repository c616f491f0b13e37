"""The sidebar's instructive images: ``<checkpoint dir>/instructive-images.json``, written by
``scripts/find_instructive_images.py``. No Streamlit here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from .state import N_TEST_IMAGES

INSTRUCTIVE_FILE = "instructive-images.json"
INSTRUCTIVE_GROUPS = {
    "multimodal": "posterior with several modes",
    "largest_gap": "largest gap between log p(x) and the ELBO",
    "vae_iwae_disagree": "VAE and IWAE disagree most",
}


def _read(directory: Path | str):
    try:
        return json.loads((Path(directory) / INSTRUCTIVE_FILE).read_text())
    except (OSError, ValueError):
        return None


def load_instructive(directory: Path | str, n_images: int = N_TEST_IMAGES) -> dict[str, list[int]]:
    """Preset images: {group: [indices]}; {} when the file is absent or unreadable. Indices outside the test set and
    unknown groups are dropped."""
    raw = _read(directory)
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for group in INSTRUCTIVE_GROUPS:
        values = raw.get(group)
        if not isinstance(values, list):
            continue
        good = [int(v) for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_images]
        if good:
            out[group] = good
    return out


def instructive_protocol(directory: Path | str) -> str | None:
    """How the presets were chosen, as the file records it."""
    raw = _read(directory)
    return str(raw["protocol"]) if isinstance(raw, Mapping) and raw.get("protocol") else None


def instructive_details(directory: Path | str) -> dict[int, Mapping]:
    """What the preset file records about each image it names ({index: details}: digit label, share of a second
    posterior mode, log p(x) and the gap to the ELBO per model); {} when absent."""
    raw = _read(directory)
    details = raw.get("details") if isinstance(raw, Mapping) else None
    if not isinstance(details, Mapping):
        return {}
    return {int(k): v for k, v in details.items() if str(k).isdigit() and isinstance(v, Mapping)}
