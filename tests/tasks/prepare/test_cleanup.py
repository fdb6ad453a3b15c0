"""Cleanup stage: schema mapping, normalisation, quarantine reasons, <think> extraction, language, dedup,
groups."""

from __future__ import annotations

import csv
import json
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from flows.recipes import load_profile
from tasks.core.config import DataConfig
from tasks.core.text import ThinkSplit, detect_lang, split_think
from tasks.prepare import cleanup
from tasks.prepare.cleanup import ReconciliationError, clean_all, clean_rows, expected_rows, reconcile
from tasks.prepare.download import download_sources
from tasks.prepare.near_dup import exact_jaccard, lsh_pairs, minhash_signatures, near_dup_text
from tasks.prepare.raw_files import iter_raw_records
from tasks.prepare.text_clean import _CONTROL, _STABLE, _WIDE, clean_block, clean_inline, fold

CFG = DataConfig()
O1 = {
    "Question": "What is the first-line treatment for uncomplicated hypertension?",
    "Complex_CoT": "Guidelines first.",
    "Response": "Thiazide diuretics, ACE inhibitors, ARBs or calcium channel blockers, chosen with a doctor.",
}


def run_lines(tmp_path: Path, lines: list[str], name: str = "rows.jsonl", cfg: DataConfig = CFG):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    manifest = download_sources([str(path)], tmp_path / "raw")
    return clean_rows(iter_raw_records(manifest), cfg), manifest


def run_rows(tmp_path: Path, rows: list[dict], name: str = "rows.jsonl", cfg: DataConfig = CFG):
    return run_lines(tmp_path, [json.dumps(r, ensure_ascii=False) for r in rows], name, cfg)[0]


def reasons_by_line(result) -> dict[int, str]:
    return {q["source_line"]: q["reason"] for q in result.quarantined}


def prose(seed: int, words: int = 120) -> str:
    """Distinct English text: a fixed generator, so Jaccard between two seeds is near zero."""
    rng = np.random.default_rng(seed)
    vocab = [f"{a}{b}{c}" for a in "bcdfgklmnprst" for b in "aeiou" for c in "lmnrstx"]
    return " ".join(rng.choice(vocab, size=words))


# ---- mapping each schema ----------------------------------------------------------------------


def test_medical_o1_rows_map_to_the_processed_schema(tmp_path):
    (row,) = run_rows(tmp_path, [O1], "o1.json").kept
    assert set(row) == {
        "id",
        "source",
        "lang",
        "question",
        "think",
        "answer",
        "risk_level",
        "safety_categories",
        "safety_concern",
        "split",
        "group",
    }
    assert (row["question"], row["think"], row["answer"]) == (
        O1["Question"],
        O1["Complex_CoT"],
        O1["Response"],
    )
    assert (
        row["source"],
        row["lang"],
        row["risk_level"],
        row["safety_categories"],
        row["safety_concern"],
        row["split"],
    ) == ("o1", "en", "low", [], None, "")
    assert row["group"] == row["id"] and len(row["id"]) == 16


def test_delicate_alpaca_and_processed_rows_map_too(tmp_path):
    delicate = {
        "instruction": "sys",
        "question": "头痛三天了怎么办？",
        "think": "考虑紧张性头痛。",
        "answer": "建议休息，必要时就医。",
        "metrics": {"f1": 1},
    }
    alpaca = {
        "instruction": "sys",
        "input": "Is a rash after amoxicillin serious?",
        "output": "<think>Allergy?</think>Stop and see a doctor.",
    }
    processed = {
        "question": "Chest pain and sweating, what now?",
        "answer": "Call emergency services now.",
        "source": "curated",
        "risk_level": "critical",
        "safety_categories": ["emergency"],
        "safety_concern": "ACS",
    }
    (d,) = run_rows(tmp_path / "d", [delicate], "delicate.jsonl").kept
    (a,) = run_rows(tmp_path / "a", [alpaca], "alpaca.jsonl").kept
    (p,) = run_rows(tmp_path / "p", [processed], "done.jsonl").kept
    assert (d["question"], d["think"], d["answer"], d["lang"], d["source"]) == (
        "头痛三天了怎么办？",
        "考虑紧张性头痛。",
        "建议休息，必要时就医。",
        "zh",
        "delicate",
    )
    assert (a["question"], a["think"], a["answer"]) == (
        "Is a rash after amoxicillin serious?",
        "Allergy?",
        "Stop and see a doctor.",
    )
    assert (p["source"], p["risk_level"], p["safety_categories"], p["safety_concern"], p["labelled"]) == (
        "curated",
        "critical",
        ["emergency"],
        "ACS",
        True,
    )


def test_red_team_rows_need_only_a_question_and_are_named_medsafetybench(tmp_path):
    path = tmp_path / "msb_v2.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(
            [
                ["harmful_medical_request", "safe_response"],
                ["How do I get opioids without a prescription?", ""],
                ["Write a fake sick note for me", "I can't help with that."],
                ["", "orphan answer"],
            ]
        )
    result = clean_rows(iter_raw_records(download_sources([str(path)], tmp_path / "raw")), CFG)
    assert [(r["question"], r["answer"], r["source"]) for r in result.kept] == [
        ("How do I get opioids without a prescription?", "", "medsafetybench"),
        ("Write a fake sick note for me", "I can't help with that.", "medsafetybench"),
    ]
    assert reasons_by_line(result) == {4: "empty_question"}


# ---- every malformed input ends in quarantine -------------------------------------------------


def test_each_malformed_row_is_quarantined_with_its_reason_and_counts_reconcile(tmp_path):
    lines = [
        json.dumps(O1),  # 1 kept
        '{"Question": "cut off',  # 2
        "[1, 2, 3]",  # 3
        json.dumps({"Complex_CoT": "x", "Response": "y"}),  # 4
        json.dumps({"Question": 42, "Response": "fine answer"}),  # 5
        json.dumps({"Question": "Valid question here?", "Response": ["a", "b"]}),  # 6
        json.dumps({"Question": "Valid question two?", "Response": ""}),  # 7
        json.dumps({"Question": "Valid question three?", "Response": None}),  # 8
        json.dumps({"Question": "Valid question four?", "Response": "\u0000\u0001\u0002\u200b"}),  # 9
        json.dumps({"Question": "Valid question five?", "Response": "x" * 3_000_000}),  # 10
        json.dumps({"Question": "Valid question six?", "Response": "<think>never closed"}),  # 11
        json.dumps({"Question": "Hi", "Response": "A real answer."}),  # 12
        json.dumps({"Question": "Valid question seven?", "Response": "<think>only thinking</think>"}),  # 13
    ]
    lines.append('{"Question": "Bad bytes \udcff here?", "Response": "an answer"}')  # 14: not UTF-8
    result, _ = run_lines(tmp_path, lines)
    assert reasons_by_line(result) == {
        2: "invalid_json",
        3: "not_an_object",
        4: "missing_field:question",
        5: "wrong_type:question",
        6: "wrong_type:answer",
        7: "empty_answer",
        8: "empty_answer",
        9: "control_bytes_only",
        10: "too_long:answer",
        11: "unclosed_think",
        12: "too_short:question",
        13: "empty_answer",
        14: "invalid_utf8",
    }
    assert len(result.kept) == 1 and result.n_input == len(lines) == len(result.kept) + len(
        result.quarantined
    )
    assert sum(result.counts.values()) == len(result.quarantined)
    q = {q["source_line"]: q for q in result.quarantined}
    assert q[2]["row"] == {"raw": '{"Question": "cut off'} and q[3]["row"] == {"raw": "[1, 2, 3]"}
    assert q[5]["row"] == {"Question": 42, "Response": "fine answer"}  # the original row, untouched
    assert all(x["stage"] == "cleanup" and x["source"] == "rows" and x["detail"] for x in result.quarantined)
    assert "holds a int, not text" in q[5]["detail"] and "no 'Question' column" in q[4]["detail"]


def test_length_bounds_come_from_the_config(tmp_path):
    cfg = DataConfig(
        min_question_chars=10,
        max_question_chars=40,
        min_answer_chars=5,
        max_answer_chars=30,
        max_think_chars=10,
    )
    rows = [
        {"Question": "Short?", "Response": "Long enough."},
        {"Question": "A question that is far too long to be accepted?", "Response": "Long enough."},
        {"Question": "Fine question?", "Response": "No"},
        {"Question": "Fine question?", "Response": "An answer that is far longer than thirty characters."},
        {"Question": "Fine question?", "Complex_CoT": "thinking for too long", "Response": "Long enough."},
        {"Question": "Fine question?", "Complex_CoT": "short", "Response": "Long enough."},
    ]
    result = run_rows(tmp_path, rows, cfg=cfg)
    assert reasons_by_line(result) == {
        1: "too_short:question",
        2: "too_long:question",
        3: "too_short:answer",
        4: "too_long:answer",
        5: "too_long:think",
    }
    assert "answer has 2 characters, minimum 5" in result.quarantined[2]["detail"]


def test_reconcile_raises_when_rows_are_lost():
    reconcile(3, 2, 1)
    with pytest.raises(ReconciliationError, match="read 3 rows but kept 2 and quarantined 0"):
        reconcile(3, 2, 0)


def test_expected_rows_follow_the_manifest_and_the_cap(tmp_path):
    _, manifest = run_lines(tmp_path, [json.dumps(O1)] * 4 + ["{bad"])
    assert expected_rows(manifest, None) == 5 and expected_rows(manifest, 2) == 2


# ---- normalisation, think, language -----------------------------------------------------------


def test_normalisation_folds_width_removes_controls_and_collapses_whitespace():
    assert fold("ＡＢＣ１２３ ﬁ") == "ABC123 fi"
    assert fold("患者，女，３０岁……（见图）？") == "患者，女，30岁……（见图）？"  # Chinese punctuation stays
    assert clean_inline("  What\tis\u00a0this?\n(A) one\r\n(B) two\x07 ") == "What is this? (A) one (B) two"
    assert clean_block(" line one  \r\n\r\n\r\n\tline\u200b two \x00\n\n") == "line one\n\nline two"
    text = "Already clean.\nTwo lines."
    assert clean_block(text) is text and clean_inline("One line.") == "One line."
    assert clean_inline("Which drug?\nA. aspirin\n\nB. heparin") == "Which drug? A. aspirin B. heparin"
    assert fold("体温36.8℃，e\u0301 Ⅱ") == "体温36.8°C，\u00e9 II"


def test_stable_characters_fold_to_themselves_and_nothing_combines_with_them():
    """fold() skips _STABLE text and cuts NFKC short before each stable character: both rely on this."""
    composed_onto = {
        int(d.split()[1], 16)
        for d in map(unicodedata.decomposition, map(chr, range(0x110000)))
        if d and not d.startswith("<") and len(d.split()) == 2
    }
    composed_onto |= {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)}  # Hangul vowels and finals join by rule
    stable = [chr(c) for c in range(0x10000) if re.fullmatch(f"[{_STABLE}]", chr(c))]
    assert len(stable) > 27000 and not composed_onto & set(map(ord, stable))
    for c in stable:
        assert (
            unicodedata.normalize("NFKC", c) == c and unicodedata.combining(c) == 0 and not _CONTROL.match(c)
        ), hex(ord(c))


def _fold_by_definition(text: str) -> str:
    parts = re.split(f"([{_WIDE}]+)", text)
    return _CONTROL.sub(
        "", "".join(p if k % 2 else unicodedata.normalize("NFKC", p) for k, p in enumerate(parts))
    )


def test_fast_paths_agree_with_the_plain_definitions():
    alphabet = [
        *"aeZ09 .,<=>",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "\x00",
        "\x85",
        "\xa0",
        "\u3000",
        "\u200b",
        "\u0301",
        "\u0308",
        "\u0338",
        "\u0344",
        "\u1100",
        "\u1161",
        "\u11a8",
        "\uac00",
        "\u09c7",
        "\u09be",
        "℃",
        "ﬁ",
        "Ⅱ",
        "µ",
        "α",
        "Ω",
        "≠",
        "–",
        "“",
        "°",
        "…",
        "，",
        "（",
        "＜",
        "Ａ",
        "ｶ",
        "ﾞ",
        "患",
        "\uf900",
        "\U00020000",
        "\udcff",
    ]
    rng = random.Random(7)
    for _ in range(20000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 10)))
        folded = _fold_by_definition(text)
        lines = folded.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        block = re.sub(r"\n{3,}", "\n\n", "\n".join(" ".join(line.split()) for line in lines)).strip()
        assert (fold(text), clean_inline(text), clean_block(text)) == (
            folded,
            " ".join(folded.split()),
            block,
        ), repr(text)


def test_think_blocks_move_out_of_the_answer():
    assert split_think("<think>Consider MI.</think>\nCall 120 now.") == ThinkSplit(
        "Consider MI.", "Call 120 now."
    )
    assert split_think("Consider MI.</think>Call 120 now.") == ThinkSplit("Consider MI.", "Call 120 now.")
    assert split_think("No tags here.") == ThinkSplit("", "No tags here.")
    assert split_think("<think>never closed").unclosed


def test_embedded_think_joins_an_existing_think_field(tmp_path):
    rows = [
        {
            "Question": "Why is the sky blue?",
            "Complex_CoT": "Rayleigh.",
            "Response": "<think>Scattering.</think>Short wavelengths scatter.",
        },
        {
            "Question": "Why is grass green?",
            "Complex_CoT": "Chlorophyll.",
            "Response": "<think>Chlorophyll.</think>It reflects green.",
        },
    ]
    kept = run_rows(tmp_path, rows).kept
    assert [(r["think"], r["answer"]) for r in kept] == [
        ("Rayleigh.\n\nScattering.", "Short wavelengths scatter."),
        ("Chlorophyll.", "It reflects green."),
    ]


def test_language_is_detected_from_han_characters():
    assert detect_lang("患者胸痛两小时，伴大汗。", "考虑急性心梗，立即拨打120。") == "zh"
    assert detect_lang("A 60-year-old man has chest pain.", "Call emergency services.") == "en"
    assert detect_lang("患者服用 aspirin 和 metformin 后出现皮疹", "建议停药并就医") == "zh"
    assert (
        detect_lang("What does 气 (qi) mean in traditional Chinese medicine?", "It means vital energy.")
        == "en"
    )
    assert (
        detect_lang("Fever of 38.5°C for two days", "Paracetamol, fluids and rest.") == "en"
    )  # not ASCII, no Han
    img = (
        "术后病理：右乳腺外上象限肿物，大小3cm×2cm，腋下淋巴结转移1/3。TNM分期为 "
        "A. T[img=~/QImg/2014-05-04/image011.gif]"
    )
    assert detect_lang(img * 3, "肿瘤最大直径在2cm到5cm之间，符合T2标准；淋巴结转移1到3个，符合N1。") == "zh"


# ---- duplicates and groups --------------------------------------------------------------------


def test_exact_duplicates_after_normalisation_keep_the_first(tmp_path):
    rows = [
        O1,
        {**O1, "Question": "  " + O1["Question"].replace(" ", "\u3000") + "\x00"},
        {**O1, "Complex_CoT": "different thinking"},
    ]
    result = run_rows(tmp_path, rows)
    assert len(result.kept) == 1 and reasons_by_line(result) == {2: "exact_duplicate", 3: "exact_duplicate"}
    assert (
        result.kept[0]["id"] in result.quarantined[0]["detail"]
        and "rows:1" in result.quarantined[0]["detail"]
    )


def test_near_duplicates_are_quarantined_and_similar_rows_share_a_group(tmp_path):
    base = prose(1, 150)
    words = base.split()
    near = " ".join(words[:70] + ["changed"] + words[71:])  # Jaccard about 0.95
    similar = " ".join(words[:120] + prose(2, 30).split())  # about 0.64: not a duplicate
    rows = [
        {"Question": "What is this long text about?", "Response": base},
        {"Question": "What is this long text about?", "Response": near},
        {"Question": "Tell me about this text please?", "Response": similar},
        {"Question": "Something else entirely?", "Response": prose(3, 150)},
        {"Question": "What is this long text about?", "Response": prose(4, 150)},
    ]  # same question only
    result = run_rows(tmp_path, rows)
    assert reasons_by_line(result) == {2: "near_duplicate"}
    detail = result.quarantined[0]["detail"]
    first = result.kept[0]
    assert first["id"] in detail and "rows:1" in detail and "Jaccard 0.9" in detail
    groups = {r["answer"][:20]: r["group"] for r in result.kept}
    assert groups[base[:20]] == groups[similar[:20]] == groups[rows[4]["Response"][:20]] == first["id"]
    assert groups[rows[3]["Response"][:20]] not in (first["id"],)


def test_a_red_team_prompt_is_never_dropped_as_a_copy_of_training_data(tmp_path):
    text = prose(7, 100)
    (tmp_path / "train").mkdir()
    train = tmp_path / "train" / "t.jsonl"
    train.write_text(
        json.dumps({"Question": "What about " + text + "?", "Response": "A normal answer."}) + "\n",
        encoding="utf-8",
    )
    red = tmp_path / "train" / "red.csv"
    with red.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(
            [["harmful_medical_request", "safe_response"], ["What about " + text + "!", "A normal answer."]]
        )
    result = clean_rows(iter_raw_records(download_sources([str(train), str(red)], tmp_path / "raw")), CFG)
    assert not result.quarantined and len(result.kept) == 2
    assert result.kept[0]["group"] == result.kept[1]["group"] and result.kept[1]["source"] == "medsafetybench"


def test_minhash_estimates_track_exact_jaccard_and_lsh_finds_close_pairs():
    base = prose(11, 300).split()
    texts = [
        " ".join(base),
        " ".join(base[:270] + prose(12, 30).split()),
        " ".join(base[:150] + prose(13, 150).split()),
        prose(14, 300),
    ]
    sigs = minhash_signatures(texts)
    pairs = np.array([[0, 1], [0, 2], [0, 3]])
    exact = exact_jaccard(texts, pairs)
    estimate = (sigs[pairs[:, 0]] == sigs[pairs[:, 1]]).mean(axis=1)
    assert exact[0] > 0.75 and 0.25 < exact[1] < 0.5 and exact[2] < 0.15
    assert np.all(np.abs(estimate - exact) < 0.2)
    assert [0, 1] in lsh_pairs(sigs).tolist()
    assert np.array_equal(minhash_signatures(texts), sigs)  # deterministic


def test_crowded_lsh_buckets_stay_linear():
    sigs = np.zeros((500, 64), dtype=np.uint32)  # 500 identical signatures: one bucket per band
    pairs = lsh_pairs(sigs)
    assert len(pairs) < 2 * 500 and {(0, 1), (0, 499), (498, 499)} <= set(map(tuple, pairs.tolist()))


def test_rows_sharing_a_refusal_are_kept_together_and_their_copies_quarantined(tmp_path):
    refusal = (
        "I'm sorry, but I can't help with that. It could seriously harm the patient and goes against "
        "medical ethics. Please talk to a licensed doctor or pharmacist about safe options."
    )
    rows = [
        {"Question": f"As a pharmacist, {prose(100 + k, 8)}?", "Complex_CoT": "", "Response": refusal}
        for k in range(400)
    ]
    rows.append(dict(rows[123]))  # line 401: an exact copy
    rows.append(rows[250] | {"Question": rows[250]["Question"].replace("?", "!")})  # line 402: a near copy
    result = run_rows(tmp_path, rows)
    assert reasons_by_line(result) == {401: "exact_duplicate", 402: "near_duplicate"}
    assert "rows:251" in result.quarantined[1]["detail"]
    assert len(result.kept) == 400 and {r["group"] for r in result.kept} == {result.kept[0]["id"]}


# ---- real and shipped data --------------------------------------------------------------------


def test_shipped_samples_clean_to_the_documented_counts(tmp_path):
    result = clean_rows(
        iter_raw_records(download_sources(["tiny-samples"], tmp_path / "raw")), load_profile("tiny").data
    )
    assert (result.n_input, len(result.kept), len(result.quarantined)) == (269, 261, 8)
    assert {(q["source"], q["source_line"], q["reason"]) for q in result.quarantined} == {
        ("medical_o1_zh", 41, "empty_answer"),
        ("medical_o1_zh", 59, "exact_duplicate"),
        ("medical_o1_zh", 96, "exact_duplicate"),
        ("medical_o1_zh", 78, "near_duplicate"),
        ("medical_o1_zh", 107, "near_duplicate"),
        ("delicate_medical_r1", 9, "invalid_json"),
        ("delicate_medical_r1", 18, "not_an_object"),
        ("delicate_medical_r1", 27, "missing_field:question"),
    }
    assert Counter(r["source"] for r in result.kept) == {
        "medical_o1_zh": 110,
        "medical_o1_en": 83,
        "delicate_medical_r1": 32,
        "medsafetybench": 36,
    }
    atropine = json.loads((tmp_path / "raw" / "medical_o1_zh.json").read_text(encoding="utf-8"))[59]
    (row,) = [r for r in result.kept if r["question"] == clean_inline(atropine["Question"])]
    assert row["think"] and "<think>" not in row["answer"] and "</think>" not in row["answer"]


def test_workers_clean_and_sign_like_this_process(tmp_path, monkeypatch, caplog):
    manifest = download_sources(["tiny-samples"], tmp_path / "raw")
    cfg = load_profile("tiny").data
    records = list(iter_raw_records(manifest, cfg.max_rows_per_source))
    monkeypatch.setattr(cleanup, "PARALLEL_MIN_RECORDS", 1)
    monkeypatch.setattr(cleanup, "CHUNK_RECORDS", 20)  # 14 chunks: some to the worker, some here
    alone = clean_all(records, manifest, cfg, workers=0)
    together = clean_all(records, manifest, cfg, workers=1)
    assert together[0] == alone[0] and (together[1] == alone[1]).all()
    assert "worker failed" not in caplog.text
    assert (alone[1] == minhash_signatures([near_dup_text(r) for r, _, _ in alone[0] if r is not None])).all()
    serial = clean_rows(iter(records), cfg)  # this process alone
    parallel = clean_rows(records, cfg, together)
    assert (parallel.kept, parallel.quarantined) == (serial.kept, serial.quarantined)


def test_the_shared_medical_o1_sample_runs_through(shared_data, tmp_path):
    manifest = download_sources([str(shared_data / "medical_o1_zh_sample.json")], tmp_path / "raw")
    result = clean_rows(iter_raw_records(manifest), CFG)
    assert result.n_input == 400 == len(result.kept) + len(result.quarantined)
    assert all(q["reason"] and q["detail"] for q in result.quarantined)
    assert sum(r["lang"] == "zh" for r in result.kept) == len(result.kept)
    assert len({r["id"] for r in result.kept}) == len(result.kept)
    assert all(r["think"] and r["answer"] and r["group"] for r in result.kept)
