"""Identifiers are masked before text leaves the machine; clinical numbers are not."""

from __future__ import annotations

import pytest

from tasks.core.redact import redact, redact_text


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        ("有事打我手机13812345678，谢谢", "13812345678", "PHONE"),
        ("电话 +86 138 1234 5678", "138 1234 5678", "PHONE"),
        ("科室电话 010-12345678", "12345678", "PHONE"),
        ("Call me at (415) 555-2671 tonight", "555-2671", "PHONE"),
        ("my cell is +44 20 7946 0958", "7946 0958", "PHONE"),
        ("write to jane.doe+care@example.co.uk please", "jane.doe", "EMAIL"),
        ("身份证号11010519491231002X，男", "11010519491231002X", "CN_ID"),
        ("病历号：ZY2024-00123，住院号 883920", "ZY2024-00123", "RECORD_NUMBER"),
        ("住院号 883920", "883920", "RECORD_NUMBER"),
        ("my insurance number is AB-123456789", "123456789", "RECORD_NUMBER"),
        ("MRN: 00482913", "00482913", "RECORD_NUMBER"),
        ("DOB: 03/14/1985", "1985", "DATE_OF_BIRTH"),
        ("date of birth is March 14, 1985", "1985", "DATE_OF_BIRTH"),
        ("出生日期：1990年3月5日", "1990", "DATE_OF_BIRTH"),
        ("see https://mychart.example.org/results?id=9 for labs", "mychart", "URL"),
        ("My name is John Smith and I have a rash", "John Smith", "NAME"),
        ("Dr. Alice Wong told me to rest", "Alice Wong", "NAME"),
        ("我叫张三，今年30岁", "张三", "NAME"),
        ("姓名：李四 性别：男", "李四", "NAME"),
    ],
)
def test_each_identifier_is_masked_with_its_kind(text: str, secret: str, kind: str) -> None:
    result = redact(text)
    assert secret not in result.text and f"[{kind}]" in result.text
    assert result.counts[kind] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "布洛芬 400mg 每 6-8 小时一次，24小时不超过 1200 mg",
        "血压 140/90 mmHg，血糖 7.8 mmol/L，体温 38.5℃，心率 110 次/分",
        "Take 500-1000 mg every 4-6 hours; max 4000 mg in 24 hours. HbA1c 6.5%",
        "2024-03-01 开始发烧，3天后好转",
        "I'm a 34-year-old woman, 62 kg, 165 cm; my INR was 2.5 on 12/03",
        "孩子3岁14公斤，美林 20mg/ml 一次 4ml",
        "WBC 12.3 x10^9/L, platelets 250000, CRP 48",
        "The patient is 17 years old and weighs 55 kg",
    ],
)
def test_clinical_numbers_and_plain_dates_are_left_alone(text: str) -> None:
    result = redact(text)
    assert result.text == text and not result.counts


def test_an_18_digit_number_that_fails_the_id_checksum_is_not_an_id() -> None:
    assert redact_text("order 110105194912310021 shipped") == "order 110105194912310021 shipped"
    assert redact_text("身份证 110105194912310021") == "身份证 110105194912310021"


def test_redaction_is_stable_so_cache_keys_on_redacted_text_repeat() -> None:
    text = "我叫王小明今年25岁，手机13912345678，邮箱 wxm@example.cn"
    once = redact_text(text)
    assert once == redact_text(text) == redact_text(once)
    assert once == "我叫[NAME]今年25岁，手机[PHONE]，邮箱 [EMAIL]"
