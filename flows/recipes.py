"""Profiles are recipes: YAML files in flows/profiles/ that fill the typed settings (tasks/core/config.py).

A profile may start from another (`extends: qwen3-0.6b`, or a YAML path relative to it) and change only
what differs; any field can be overridden from the command line (`--set rl.learning_rate=5e-6`).

profile = load_profile("tiny", {"rl.steps": 4})
profile = load_profile("qwen3-0.6b", parse_sets(["rl.learning_rate=5e-6", "rl.steps=10"]))
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tasks.core.config import Profile
from tasks.core.errors import ProfileError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _profile_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    named = PROFILES_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    path = Path(name_or_path)
    if relative_to is not None and not path.is_absolute() and (relative_to / path).is_file():
        return relative_to / path
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {name_or_path!r}; choose one of "
            f"{', '.join(available_profiles())} or give a YAML path"
        )
    return path


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """child over parent, section by section (nested mappings merge; lists and scalars replace)."""
    out = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A profile's YAML with its `extends` chain resolved (a cycle is named)."""
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ProfileError(f"profile {path} extends itself ({chain}); remove one `extends`")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ProfileError(
            f"profile {path} cannot be read ({reason}); give a readable UTF-8 YAML file"
        ) from None
    if not isinstance(raw, dict):
        raise ProfileError(f"profile {path} must be a mapping of sections (data:, model:, rl:, ...)")
    raw.setdefault("name", path.stem)
    parent_name = raw.pop("extends", None)
    if parent_name is None:
        return raw
    parent = _read_raw(_profile_path(str(parent_name), path.parent), (*seen, path.resolve()))
    return _merge(parent, raw)


def load_profile(name_or_path: str = "tiny", overrides: dict[str, Any] | None = None) -> Profile:
    """Load a named profile (flows/profiles/NAME.yaml) or a YAML file path, then apply overrides."""
    path = _profile_path(name_or_path)
    raw = _read_raw(path)
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"profile {path} is invalid:\n{exc}") from None
    if env_model := os.environ.get("MEDSAFE_BASE_MODEL"):
        profile = profile.with_overrides({"model.base": env_model, "model.tiny": False})
    return profile.with_overrides(overrides) if overrides else profile


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs as overrides; VALUE is read as YAML (5e-6, true, null, [a, b], text)."""
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ProfileError(f"--set expects KEY=VALUE (e.g. rl.learning_rate=5e-6), got {pair!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        overrides[key.strip()] = value
    return overrides


def resolved_profile(name_or_path: str, sets: list[str] | None, folder: Path) -> str:
    """The profile to hand a flow: the name itself without --set, else the resolved settings written once to
    folder/<name>-<hash>.yaml (flows load profiles by name or path, so every flow sees the overrides)."""
    if not sets:
        return name_or_path
    profile = load_profile(name_or_path, parse_sets(sets))
    text = yaml.safe_dump(profile.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
    path = Path(folder) / f"{profile.name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.yaml"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {profile.name} with --set {' '.join(sets)}\n{text}", encoding="utf-8")
    return str(path)


def field_help(model: type[BaseModel] = Profile, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) of every setting, read from the config schema."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(field_help(annotation, f"{key}."))
            continue
        default = field.get_default(call_default_factory=True)
        rows.append((key, repr(default), field.description or ""))
    return rows
