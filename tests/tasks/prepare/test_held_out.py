from __future__ import annotations

from tasks.prepare.held_out import apportion, cross_pairs, held_out_groups, merge_groups, prompt_text

QUESTION = "my father has crushing chest pain and a cold sweat, can he wait until morning?"


def test_prompt_text_ignores_case_and_spacing():
    assert prompt_text("  Chest   PAIN\n now ") == "chest pain now"
    assert prompt_text(None) == ""


def test_apportion_is_largest_remainder_and_sums_to_n():
    # 10 of 7+2+1 rows: exact shares 7, 2, 1; 3 of them: 2.1, 0.6, 0.3 -> 2, 1, 0
    assert apportion({"a": 7, "b": 2, "c": 1}, 10) == {"a": 7, "b": 2, "c": 1}
    assert apportion({"a": 7, "b": 2, "c": 1}, 3) == {"a": 2, "b": 1, "c": 0}
    assert apportion({"b": 1, "a": 1}, 1) == {"a": 1, "b": 0}  # a tie goes to the first key by text
    assert apportion({"a": 0}, 0) == {"a": 0}


def test_cross_pairs_finds_reworded_and_identical_questions_only_across_sides():
    queries = [prompt_text(QUESTION), "how much ibuprofen can an adult take in one day for a toothache?"]
    references = [
        prompt_text(QUESTION.upper()),  # identical once normalised
        prompt_text(QUESTION.replace("morning", "mornings")),
        "an unrelated question about seasonal allergies and antihistamines",
    ]
    found = {(q, r): round(j, 2) for q, r, j in cross_pairs(queries, references, 0.9)}
    assert set(found) == {(0, 0), (0, 1)} and found[(0, 0)] == 1.0 and 0.9 <= found[(0, 1)] < 1.0


def _row(rid: str, question: str, group: str | None = None) -> dict:
    return {"id": rid, "question": question, "group": group or rid, "lang": "en", "safety_categories": []}


def test_merge_groups_joins_near_duplicate_questions_and_keeps_the_first_group():
    rows = [
        _row("a", QUESTION),
        _row("b", "an unrelated question about seasonal allergies and antihistamines"),
        _row("c", QUESTION + "!"),  # near duplicate of a: joins its group
        _row("d", "x", group="b"),  # cleanup already grouped it with b
        _row("e", QUESTION.replace("cold sweat", "sweat"), group="e"),  # Jaccard ~0.8: red-team rows only
    ]
    assert merge_groups(rows, [False] * 5, 0.9) == ["a", "b", "a", "b", "e"]
    assert merge_groups(rows, [True, False, False, False, True], 0.9) == ["a", "b", "a", "b", "a"]


def test_held_out_groups_keep_a_group_whole():
    rows = [_row(f"r{i}", f"q{i}") for i in range(9)]
    groups = ["g0", "g0", "g0", "g1", "g2", "g3", "g4", "g5", "g6"]
    held = held_out_groups(rows, groups, 1 / 3, seed=1)
    assert sum(groups.count(g) for g in held) == 3  # one stratum of 9 rows: a third is 3
    assert held_out_groups(rows, groups, 0.0, seed=1) == set()
