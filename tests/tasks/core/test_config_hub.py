"""Profile settings for hubs and rollouts: `hub` reaches data and model, --set hub=... replaces both."""

from __future__ import annotations

import pytest

from flows.recipes import load_profile
from tasks.core.config import Profile, RLConfig
from tasks.core.errors import ProfileError


def test_profile_hub_reaches_data_and_model_and_each_part_can_differ():
    p = Profile.model_validate({"name": "x", "hub": "modelscope", "model": {"hub": "huggingface"}})
    assert (p.hub, p.data.hub, p.model.hub) == ("modelscope", "modelscope", "huggingface")
    real = load_profile("qwen3-0.6b")
    assert (real.hub, real.data.hub, real.model.hub) == ("huggingface",) * 3
    moved = real.with_overrides({"hub": "modelscope"})  # what --set hub=modelscope does
    assert (moved.data.hub, moved.model.hub) == ("modelscope", "modelscope")
    assert moved.with_overrides({"data.hub": "huggingface"}).model.hub == "modelscope"
    with pytest.raises(ProfileError, match="hub = 'github'"):
        real.with_overrides({"hub": "github"})


def test_rollout_batch_defaults_to_the_plan_batch_in_the_real_profiles():
    for name in ("qwen3-0.6b", "qwen3-1.7b"):
        rl = load_profile(name).rl
        assert rl.rollout_batch_size is None and rl.batch_size == 4 and rl.rollout_compile == "auto"
    assert RLConfig(batch_size=4, rollout_batch_size=16).rollout_batch_size == 16
