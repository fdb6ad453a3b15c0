"""Identifiers are masked before the teacher or the evaluation judge sees them, and caches key on the masked
text: checked on what a real local OpenAI-protocol server received."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tasks.core.config import EvalJudgeConfig, TeacherConfig
from tasks.core.redact import should_redact
from tasks.evaluate.judge import EvalJudge
from tasks.reward.teacher import Teacher

_spec = importlib.util.spec_from_file_location(
    "openai_fault_server", Path(__file__).parents[2] / "support" / "openai_fault_server.py"
)
fault_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fault_server)

KEY = "sk-test-redaction-0123456789"
FAST = dict(timeout_s=0.5, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=3, concurrency=2)
QUESTION = "我叫张三，手机13812345678，病历号：ZY2024-00123。胸口痛怎么办？"
OTHER_PHONE = "我叫张三，手机13998765432，病历号：ZY2024-00123。胸口痛怎么办？"
ANSWER = "Call 120 now; my email is nurse.li@example.com if you need me."


def sent_text(server) -> str:  # noqa: ANN001
    return json.dumps(server.bodies, ensure_ascii=False)


def test_remote_endpoints_are_redacted_by_default_and_this_machine_is_not() -> None:
    assert should_redact(None, "https://api.deepseek.com") is True
    assert should_redact(None, "http://127.0.0.1:8000/v1") is False
    assert should_redact(None, "http://localhost:8000/v1") is False
    assert should_redact(True, "http://127.0.0.1:8000/v1") is True
    assert should_redact(False, "https://api.deepseek.com") is False


def test_the_teacher_sends_and_caches_masked_text(tmp_path: Path) -> None:
    cfg = TeacherConfig(redact=True, **FAST)
    with fault_server.FaultServer(script=("ok",)) as server:
        teacher = Teacher(cfg, tmp_path / "t.sqlite", api_key=KEY, base_url=server.base_url)
        first, second = teacher.judge_many([(QUESTION, ANSWER), (OTHER_PHONE, ANSWER)])
        teacher.close()
    sent = sent_text(server)
    for secret in ("13812345678", "13998765432", "张三", "ZY2024-00123", "nurse.li@example.com"):
        assert secret not in sent
    assert "[PHONE]" in sent and "[NAME]" in sent and "[RECORD_NUMBER]" in sent and "[EMAIL]" in sent
    assert server.calls == 1 and first == second  # the two differ only in a masked phone: one judgement


def test_the_evaluation_judge_masks_question_answer_and_reference(tmp_path: Path) -> None:
    cfg = EvalJudgeConfig(model="judge-model", redact=True, **FAST)
    item = {
        "question": QUESTION,
        "response": ANSWER,
        "kind": "patient_question",
        "reference": "Call 010-12345678",
    }
    with (
        fault_server.FaultServer(script=("ok",)) as server,
        EvalJudge(cfg, tmp_path / "j.sqlite", api_key=KEY, base_url=server.base_url) as judge,
    ):
        (verdict,) = judge.grade([item])
        assert judge.describe()["redacted"] is True
    sent = sent_text(server)
    assert "13812345678" not in sent and "010-12345678" not in sent and "[PHONE]" in sent
    assert verdict is not None


def test_a_local_judge_gets_the_text_as_it_is(tmp_path: Path) -> None:
    with fault_server.FaultServer(script=("ok",)) as server:
        teacher = Teacher(TeacherConfig(**FAST), tmp_path / "t.sqlite", api_key=KEY, base_url=server.base_url)
        teacher.judge_many([(QUESTION, ANSWER)])
        teacher.close()
    assert "13812345678" in sent_text(server)
