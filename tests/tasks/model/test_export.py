"""`medsafe export`: a merged folder plain transformers loads (medsafe's packages blocked), with a card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.config import ModelConfig
from tasks.core.workdir import Workdir
from tasks.model import tiny as tiny_model
from tasks.model.export import ExportError, export_model, push_to_hub, resolve_source
from tasks.model.loading import load_model

TEXTS = [
    "胸痛请立即拨打120。",
    "Chest pain: call emergency services now.",
    "<think>想一想</think>多喝水",
] * 20
TINY = ModelConfig(base="tiny", tiny=True, dtype="float32", max_seq_len=128)

LOAD_WITHOUT_MEDSAFE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tasks', 'flows', 'validation'):
            raise ImportError('medsafe is not installed here: ' + name)
sys.meta_path.insert(0, Block())
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
messages = [{'role': 'user', 'content': 'hi'}]
text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
ids = tok(text, return_tensors='pt').input_ids
out = model.generate(ids, max_new_tokens=3, do_sample=False)
params = sum(p.numel() for p in model.parameters())
print('think' in (tok.chat_template or ''), out.shape[1] > ids.shape[1], params)
"""


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("export")
    base = tiny_model.build_tiny_base(root / "tiny", TEXTS)
    peft_model = get_peft_model(
        load_model(base, TINY), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(root / "adapter")
    return root / "adapter"


def test_an_exported_adapter_loads_with_plain_transformers_and_carries_a_card(adapter, tmp_path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    report = workdir.root / "reports" / "eval" / "base-vs-sft-vs-rl" / "report.md"
    report.parent.mkdir(parents=True)
    (report.parent / "comparison.json").write_text("{}")
    report.write_text(
        "| metric | base | sft |\n|---|---|---|\n| violation rate | 40% (95% CI 30–50%) | 20% |\n"
    )
    out = tmp_path / "exported"
    summary = export_model(workdir, str(adapter), out)
    assert summary["weights"] == ["model.safetensors"]
    run = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_MEDSAFE, str(out)], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    think, generated, params = run.stdout.split()
    assert think == "True" and generated == "True" and int(params) > 0
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert "license: apache-2.0" in front and "- zh" in front and "- en" in front and "base_model:" in front
    for section in (
        "## Intended use and limits",
        "Not a medical device",
        "## Training settings",
        "## Evaluation",
    ):
        assert section in card
    assert "violation rate | 40% (95% CI 30–50%)" in card and "## Known failure modes" in card


def test_the_merged_weights_are_the_adapters_not_the_base(adapter, tmp_path) -> None:
    from safetensors.torch import load_file

    base, _ = resolve_source(Workdir.at(tmp_path), str(adapter))
    export_model(Workdir.at(tmp_path), str(adapter), tmp_path / "out")
    exported = load_file(str(tmp_path / "out" / "model.safetensors"))
    plain = load_model(base, TINY).state_dict()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not exported[q].equal(plain[q])
    k = "model.layers.0.self_attn.k_proj.weight"
    assert exported[k].equal(plain[k])


def test_missing_models_and_an_unreachable_hub_are_one_clear_line(tmp_path, monkeypatch) -> None:
    with pytest.raises(ExportError, match="run `medsafe rl` first"):
        resolve_source(Workdir.at(tmp_path), "rl")
    with pytest.raises(ExportError, match="no model at"):
        resolve_source(Workdir.at(tmp_path), str(tmp_path / "nowhere"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="not pushed to me/model: HF_HUB_OFFLINE"):
        push_to_hub(tmp_path, "me/model")
    result = CliRunner().invoke(
        app, ["export", "--model", "sft", "--out", str(tmp_path / "x"), "-w", str(tmp_path)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "export failed: no model at" in result.output and "medsafe sft" in result.output
