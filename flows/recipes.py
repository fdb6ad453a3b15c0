"""Profiles are recipes: YAML files in flows/profiles/ that fill the typed settings (tasks/core/config.py).

profile = load_profile("tiny", {"rl.steps": 4})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tasks.core.config import Profile
from tasks.core.errors import ProfileError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str = "tiny", overrides: dict[str, Any] | None = None) -> Profile:
    """Load a named profile (flows/profiles/NAME.yaml) or a YAML file path, then apply overrides."""
    named = PROFILES_DIR / f"{name_or_path}.yaml"
    path = named if named.is_file() else Path(name_or_path)
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {name_or_path!r}; choose one of "
            f"{', '.join(available_profiles())} or give a YAML path"
        )
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw.setdefault("name", path.stem)
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"profile {path} is invalid:\n{exc}") from None
    if env_model := os.environ.get("MEDSAFE_BASE_MODEL"):
        profile = profile.with_overrides({"model.base": env_model, "model.tiny": False})
    return profile.with_overrides(overrides) if overrides else profile
