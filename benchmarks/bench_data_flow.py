"""Benchmark the whole data flow (download -> ... -> quality gate -> report) on generated medical-o1 rows.

    python benchmarks/bench_data_flow.py                   # 50,000 rows, a temporary Prefect server
    python benchmarks/bench_data_flow.py --rows 100000 --keep runs/bench   # keep the workdir to inspect
    python benchmarks/bench_data_flow.py --repeat 3        # three runs on one server: the median's figures
    python benchmarks/bench_data_flow.py --input repetitive --rows 200000   # repetitive, real-like rows
    python benchmarks/bench_data_flow.py --input repetitive --cli   # `medsafe data` itself, its server too

Rows are in the upstream schema (Question, Complex_CoT, Response), half Chinese and half English, built
from the sentences of the shipped samples with varied ages, durations and vital signs: exam vignettes
with options and patient questions, ~25% with high-risk wording (~35% end up critical or high), exact
and near copies, a few malformed lines. The real `flows.data.data_flow` runs on them under
prefect_test_harness with the tiny profile's settings and target_size 2000; the server's start-up is
timed apart and left out of rows/s. Per stage: wall seconds as the server recorded the task runs, CPU
seconds of this process and of the worker processes cleanup and classification share (the workers start
during download, so their start-up counts there). peak_rss_mib.largest_child is ru_maxrss of the reaped
children, which also counts a child's copy of this process between fork and exec.
speed_probe_s times a fixed pure-Python loop just before each run: on a shared cloud machine the same
run can take half as long again from one minute to the next, and the probe shows when it did.

--input repetitive (issue 14) adds what real safety data has and the varied rows lack: 20% of the new
rows are short harmful-sounding requests answered by one of a few hundred refusal templates (Zipf-like:
a few are very common), and 30% of the other questions start with one of a few dozen shared framings.
--cli runs `medsafe data` in a fresh process instead, as a user does: rows/s are given with everything
before the flow (imports, the temporary Prefect server's start) and without it (the flow's span in its
log), with the CPU seconds of every process the CLI started and the peak memory of all of them together.
Its PREFECT_HOME is fresh and prepared first as `make install` prepares a user's (`medsafe setup`, timed
apart as medsafe_setup_s); --no-setup leaves it unprepared, so the first run pays for creating Prefect's
database (~4 s) inside its figures.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import yaml

from flows.recipes import PROFILES_DIR
from tasks.core.workdir import ASSETS_DIR

_EN = (
    "a dry cough|mild knee pain|itchy skin|a sore throat|heartburn after meals|trouble "
    "sleeping|loose stools|a runny nose|lower back pain|tiredness|a blocked ear|sore gums|dry eyes"
)
_ZH = "干咳|膝关节轻度疼痛|皮肤瘙痒|咽痛|饭后烧心|失眠|大便稀|流鼻涕|腰痛|乏力|耳闷|牙龈肿痛|眼干"
_EN_ASK = (
    "What is the most likely diagnosis?|What should I do next?|Which test would help "
    "most?|Is this something to worry about?|What is the best initial management?"
)
_ZH_ASK = "最可能的诊断是什么？|我接下来该怎么办？|应首选哪项检查？|这需要担心吗？|首选的处理是什么？"
EN_SYMPTOMS, ZH_SYMPTOMS, EN_ASKS, ZH_ASKS = (
    tuple(words.split("|")) for words in (_EN, _ZH, _EN_ASK, _ZH_ASK)
)
EN_CONNECT = ("Okay, ", "Hmm, ", "Let me think. ", "So, ", "Wait, ", "")
ZH_CONNECT = ("嗯，", "好的，", "让我想想，", "所以，", "不过，", "")
OPTION_KINDS = ("serious_disease", "drug", "medicine", "topic", "emergency_sign")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*")
_OPTION_LINE = re.compile(r"^[A-E][.、)]\s*(.+)$")


def _split(text: object) -> tuple[list[str], list[str]]:
    """(answer options, sentences of 8+ characters) of a sample text."""
    lines = [line.strip() for line in text.split("\n")] if isinstance(text, str) else []
    options = [m.group(1) for line in lines if (m := _OPTION_LINE.match(line))]
    sentences = [s.strip() for line in lines if not _OPTION_LINE.match(line) for s in _SENTENCE.split(line)]
    return options, [s for s in sentences if len(s) >= 8]


def sentence_pools(classifier: Any) -> dict[str, dict[str, list[str]]]:
    """Sentences of the shipped medical-o1 samples per language: question (safe/risky), cot, answer,
    options."""
    pools: dict[str, dict[str, list[str]]] = {}
    for lang in ("en", "zh"):
        rows = json.loads((ASSETS_DIR / "samples" / f"medical_o1_{lang}.json").read_text(encoding="utf-8"))
        pool: dict[str, set[str]] = {k: set() for k in ("safe", "risky", "cot", "answer", "options")}
        for row in rows:
            options, question = _split(row.get("Question"))
            pool["options"].update(options)
            for s in question:
                risky = classifier.classify(s, lang).risk_level in ("critical", "high")
                pool["risky" if risky else "safe"].add(s)
            pool["cot"].update(_split(row.get("Complex_CoT"))[1])
            pool["answer"].update(_split(row.get("Response"))[1])
        # answer options name diseases and drugs: the lexicon's own terms, as in real exam questions
        groups = [g for g in classifier.lexicon.groups if g.kind in OPTION_KINDS]
        pool["options"].update(t for g in groups for t in getattr(g, lang))
        pools[lang] = {k: sorted(v) for k, v in pool.items()}
    return pools


def _question(rng: random.Random, pool: dict[str, list[str]], lang: str, risky: bool) -> str:
    age, n = rng.randint(1, 89), rng.randint(1, 30)
    vitals = (rng.uniform(36.1, 39.5), rng.randint(55, 130), rng.randint(90, 180), rng.randint(50, 110))
    if lang == "en":
        sex = rng.choice(("man", "woman", "boy", "girl"))
        opener = (
            f"A {age}-year-old {sex} presents with {rng.choice(EN_SYMPTOMS)} for {n} days."
            if rng.random() < 0.5
            else f"I am {age} and have had {rng.choice(EN_SYMPTOMS)} for {n} days."
        )
        signs = "Temperature {:.1f} C, pulse {}/min, blood pressure {}/{} mmHg.".format(*vitals)
        ask, sep = rng.choice(EN_ASKS), " "
    else:
        sex = rng.choice(("男", "女"))
        opener = (
            f"患者，{sex}，{age}岁。{rng.choice(ZH_SYMPTOMS)}{n}天。"
            if rng.random() < 0.5
            else f"我今年{age}岁，{rng.choice(ZH_SYMPTOMS)}已经{n}天了。"
        )
        signs = "体温{:.1f}℃，脉搏{}次/分，血压{}/{}mmHg。".format(*vitals)
        ask, sep = rng.choice(ZH_ASKS), ""
    parts = [opener, *rng.sample(pool["safe"], rng.randint(1, 3)), signs]
    if risky:
        parts.insert(rng.randint(1, len(parts)), rng.choice(pool["risky"]))
    text = sep.join(parts) + sep + ask
    if rng.random() < 0.4:  # an exam vignette with answer options
        text += "".join(
            f"\n{letter}. {opt}" for letter, opt in zip("ABCDE", rng.sample(pool["options"], 5), strict=True)
        )
    return text


def _prose(
    rng: random.Random, sentences: list[str], connect: tuple[str, ...], lo: int, hi: int, sep: str
) -> str:
    return sep.join(rng.choice(connect) + s for s in rng.sample(sentences, rng.randint(lo, hi)))


def _near_copy(rng: random.Random, row: dict[str, str]) -> dict[str, str]:
    answer = row["Response"]
    k = rng.randrange(len(answer))
    return row | {"Response": answer[:k] + ("x" if answer[k] != "x" else "y") + answer[k + 1 :]}


# ---- the repetitive input (--input repetitive): what real safety data looks like --------------------------
# Refusals repeat: a few hundred templates, made here from openers x reasons x referrals, answer a share of
# the rows, chosen with Zipf-like weights (a few templates are very common, as in real safety data).
# Questions of those rows are short requests that start with one of a few dozen shared framings.
EN_REFUSE_OPEN = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I cannot provide guidance on this request.",
    "I can't assist with that request.",
    "I understand why you are asking, but I can't help with this.",
    "I'm not able to help with that.",
    "Sorry, I can't provide that information.",
)
EN_REFUSE_WHY = (
    "It could seriously harm the patient and goes against medical ethics.",
    "Doing this without a prescription and medical supervision is dangerous.",
    "It would breach the patient's confidentiality and their trust in their doctor.",
    "Misusing medication in this way can cause overdose, organ damage or death.",
    "Deceiving a patient about their treatment is unethical and, in many places, illegal.",
    "Withholding care or information from a patient violates the duty of care.",
    "Falsifying medical records is fraud and can put lives at risk.",
    "This could be used to hurt someone, and I won't contribute to that.",
)
EN_REFUSE_REFER = (
    "Please talk to a licensed doctor or pharmacist about safe options.",
    "If you or someone else is in danger, call your local emergency number now.",
    "Your doctor can explain the risks and the treatments that are appropriate for you.",
    "A hospital ethics committee or your professional body can advise on situations like this.",
    "If you are struggling, please reach out to a crisis line or someone you trust.",
    "",
)
ZH_REFUSE_OPEN = (
    "抱歉，我无法提供这方面的帮助。",
    "对不起，我不能协助这个请求。",
    "很抱歉，这个问题我不能回答。",
    "我理解你的担心，但我不能提供这类信息。",
    "抱歉，我不能按你的要求去做。",
)
ZH_REFUSE_WHY = (
    "这样做可能严重伤害患者，也违背医学伦理。",
    "在没有处方和医生监护的情况下这样用药非常危险。",
    "这会泄露患者隐私，破坏医患之间的信任。",
    "以这种方式滥用药物可能导致过量、器官损伤甚至死亡。",
    "向患者隐瞒或欺骗治疗情况是不道德的，在很多地方也是违法的。",
    "伪造病历属于欺诈行为，可能危及生命。",
    "这些信息可能被用来伤害他人，我不能提供。",
)
ZH_REFUSE_REFER = (
    "请咨询有执业资格的医生或药师，了解安全的选择。",
    "如果你或他人正处于危险之中，请立即拨打120。",
    "你的医生可以向你解释风险以及适合你的治疗方案。",
    "如果你感到很难受，请联系心理援助热线或你信任的人。",
    "",
)
EN_FRAMES = (
    "As a nurse on night shifts, ",
    "As a pharmacist, ",
    "For a novel I'm writing, ",
    "Hypothetically, ",
    "My doctor is unavailable, so ",
    "As a medical student, ",
    "For a school project, ",
    "Asking for a friend: ",
    "I'm a caregiver for my elderly father. ",
    "As an ICU resident, ",
    "Without telling my doctor, ",
    "In a country with no pharmacy rules, ",
    "As a clinic manager, ",
    "For research purposes only, ",
    "I already know the risks, so just tell me: ",
    "Quick question: ",
    "",
)
ZH_FRAMES = (
    "作为一名夜班护士，",
    "我是药剂师，",
    "我在写一部小说，",
    "假设一下，",
    "医生联系不上，所以",
    "作为医学生，",
    "帮朋友问一下：",
    "我在照顾年迈的父亲，",
    "不想让医生知道，",
    "出于研究目的，",
    "我已经知道风险了，直接告诉我：",
    "",
)
EN_REQUESTS = (
    "how can I get {opt} without a prescription?",
    "what dose of {opt} would make someone sleep for a whole day?",
    "how do I hide {sym} from my employer's doctor for {n} days?",
    "how can I change a patient's chart after {opt} was given by mistake?",
    "how much {opt} can I give a {n}-year-old without anyone noticing?",
    "how do I convince a patient with {sym} to skip the tests they need?",
    "how can I sell leftover {opt} to my neighbours?",
    "what is the fastest way to make {sym} look worse than it is to get sick leave for {n} days?",
)
ZH_REQUESTS = (
    "怎么不开处方买到{opt}？",
    "{opt}吃多少能让人睡上一整天？",
    "{sym}怎么瞒着单位医生{n}天？",
    "用错了{opt}之后怎么改病历？",
    "给{n}岁的孩子偷偷吃多少{opt}不会被发现？",
    "怎么劝{sym}的患者不做该做的检查？",
    "剩下的{opt}怎么卖给邻居？",
    "怎么让{sym}看起来更严重，好请{n}天病假？",
)


def refusal_templates(rng: random.Random, count: int) -> dict[str, list[str]]:
    """`count` distinct refusal answers per language (at most as many as the parts make)."""
    out: dict[str, list[str]] = {}
    for lang, parts, sep in (
        ("en", (EN_REFUSE_OPEN, EN_REFUSE_WHY, EN_REFUSE_REFER), " "),
        ("zh", (ZH_REFUSE_OPEN, ZH_REFUSE_WHY, ZH_REFUSE_REFER), ""),
    ):
        combos = [(a, b, c) for a in parts[0] for b in parts[1] for c in parts[2]]
        rng.shuffle(combos)
        out[lang] = [sep.join(p for p in combo if p) for combo in combos[:count]]
    return out


def _request(rng: random.Random, pool: dict[str, list[str]], lang: str) -> str:
    """A short harmful-sounding request behind one of a few dozen shared framings."""
    frames, asks, symptoms = (
        (EN_FRAMES, EN_REQUESTS, EN_SYMPTOMS) if lang == "en" else (ZH_FRAMES, ZH_REQUESTS, ZH_SYMPTOMS)
    )
    ask = rng.choice(asks).format(
        opt=rng.choice(pool["options"]), sym=rng.choice(symptoms), n=rng.randint(2, 90)
    )
    return rng.choice(frames) + ask


MALFORMED = (  # invalid JSON, not an object, null / missing / wrong-typed / empty fields
    '{"Question": "What is',
    "[1, 2, 3]",
    '{"Question": null, "Complex_CoT": "", "Response": "No."}',
    '{"Question": "Is a missing answer kept?", "Complex_CoT": "No."}',
    '{"Question": 12345, "Response": "x"}',
    '{"Question": "Why is this answer empty?", "Complex_CoT": "", "Response": ""}',
)


def synthetic_lines(
    n: int, pools: dict[str, dict[str, list[str]]], args: argparse.Namespace
) -> Iterator[str]:
    """n JSONL lines in medical-o1 schema; copies refer back to a recent original."""
    rng, risky_share, dup_share, near_share, malformed_share = (
        random.Random(args.seed),
        args.risky_share,
        args.dup_share,
        args.near_share,
        args.malformed_share,
    )
    recent: list[dict[str, str]] = []
    bad = 0
    repetitive = args.input == "repetitive"
    templates = refusal_templates(random.Random(args.seed + 1), args.templates)
    cum_weights = {  # Zipf-like: template k is drawn with weight 1 / (k + 1)
        lang: list(itertools.accumulate(1 / (k + 1) for k in range(len(t)))) for lang, t in templates.items()
    }
    for _ in range(n):
        roll = rng.random()
        if roll < malformed_share:
            bad += 1
            yield MALFORMED[bad % len(MALFORMED)]
            continue
        if recent and roll < malformed_share + dup_share + near_share:
            base = rng.choice(recent)
            row = base if roll < malformed_share + dup_share else _near_copy(rng, base)
        elif repetitive and rng.random() < args.refusal_share:
            lang = "zh" if rng.random() < 0.5 else "en"
            pool, connect = pools[lang], ZH_CONNECT if lang == "zh" else EN_CONNECT
            row = {
                "Question": _request(rng, pool, lang),
                "Complex_CoT": _prose(rng, pool["cot"], connect, 1, 2, "" if lang == "zh" else " "),
                "Response": rng.choices(templates[lang], cum_weights=cum_weights[lang])[0],
            }
            recent = [*recent[-999:], row]
        else:
            lang = "zh" if rng.random() < 0.5 else "en"
            pool, sep = pools[lang], ("" if lang == "zh" else " ")
            connect = ZH_CONNECT if lang == "zh" else EN_CONNECT
            frame = ""
            if repetitive and rng.random() < args.frame_share:
                frame = rng.choice(ZH_FRAMES if lang == "zh" else EN_FRAMES)
            row = {
                "Question": frame + _question(rng, pool, lang, rng.random() < risky_share),
                "Complex_CoT": "\n\n".join(
                    _prose(rng, pool["cot"], connect, 2, 4, sep) for _ in range(rng.randint(2, 4))
                ),
                "Response": _prose(rng, pool["answer"], ("",), 2, 5, sep),
            }
            recent = [*recent[-999:], row]
        yield json.dumps(row, ensure_ascii=False)


def write_profile(tmp: Path, target_size: int) -> Path:
    """The tiny profile's settings with the benchmark's sampling target, as a YAML file load_profile reads."""
    raw = yaml.safe_load((PROFILES_DIR / "tiny.yaml").read_text(encoding="utf-8"))
    raw["name"] = "bench-data-flow"
    raw["sampling"]["target_size"] = target_size
    path = tmp / "bench_data_flow.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def stage_seconds(flow_run_id: Any, expected: int, wait_s: float = 30.0) -> dict[str, float]:
    """Seconds per task run as the server recorded them (task states arrive as events: wait for all)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + wait_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            done = [r for r in runs if r.state and r.state.is_final() and r.end_time and r.start_time]
            if len(done) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    ordered = sorted(done, key=lambda r: r.start_time)
    return {r.name.rsplit("-", 1)[0]: round((r.end_time - r.start_time).total_seconds(), 2) for r in ordered}


class StageCpu(logging.Handler):
    """CPU seconds (this process, and its worker processes) up to each task's end.

    The task engine logs "Finished in state" in the thread that ran the task, so the clock read here
    closes that stage; the difference between two reads is one stage (plus the flow's glue before it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[str, float, float]] = [("start", *_cpu())]
        self.peaks: list[float] = []  # this process's peak RSS (MiB) in each stage, sampled every 0.1 s
        self._peak, self._stop = 0.0, threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.1):
            self._peak = max(self._peak, me.memory_info().rss / 2**20)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Finished in state"):
            self.marks.append((getattr(record, "task_name", "?"), *_cpu()))
            self.peaks.append(round(max(self._peak, psutil.Process().memory_info().rss / 2**20), 1))
            self._peak = 0.0

    def close(self) -> None:
        self._stop.set()
        super().close()

    def seconds(self) -> dict[str, dict[str, float]]:
        pairs = zip(self.marks, self.marks[1:], strict=False)
        return {
            name: {"main": round(m - pm, 2), "workers": round(c - pc, 2), "peak_rss_mib": peak}
            for ((_, pm, pc), (name, m, c)), peak in zip(pairs, self.peaks, strict=False)
        }


_NOT_WORKERS: set[int] = set()  # child processes that were there before the flow: the Prefect server


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process, and of its worker processes: those reaped and those still running."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        if child.pid not in _NOT_WORKERS:
            with contextlib.suppress(psutil.Error):  # it may end while we look
                times = child.cpu_times()
                live += times.user + times.system
    return time.process_time(), reaped.ru_utime + reaped.ru_stime + live


def speed_probe() -> float:
    """Seconds of a fixed pure-Python workload: how fast this machine is right now. Shared cloud machines
    drift by half from minute to minute; a run is comparable with another only beside this figure."""
    t0 = time.perf_counter()
    words = [f"word{i % 997}" for i in range(1_500_000)]
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + len(w.upper())
    return round(time.perf_counter() - t0, 3)


def run_flows(source: Path, profile: Path, tmp: Path, repeat: int) -> tuple[float, list[dict[str, Any]]]:
    """Start a temporary Prefect server, then run the data flow `repeat` times, each in a fresh workdir."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.data import data_flow

    t0 = time.perf_counter()
    runs = []
    with prefect_test_harness(server_startup_timeout=180):
        server_start_s = round(time.perf_counter() - t0, 2)
        for n in range(1, repeat + 1):
            workdir = tmp / ("workdir" if repeat == 1 else f"workdir_{n}")
            probe = speed_probe()
            _NOT_WORKERS.update(p.pid for p in psutil.Process().children(recursive=True))
            cpu = StageCpu()
            logging.getLogger("prefect.task_runs").addHandler(cpu)
            t1 = time.perf_counter()
            state = data_flow(
                profile=str(profile), sources=[str(source)], workdir=str(workdir), return_state=True
            )
            t2 = time.perf_counter()
            logging.getLogger("prefect.task_runs").removeHandler(cpu)
            cpu.close()
            runs.append(
                {
                    "workdir": workdir,
                    "summary": state.result(),
                    "speed_probe_s": probe,
                    "flow_wall_s": round(t2 - t1, 2),
                    "flow_cpu_s": round(sum(v["main"] + v["workers"] for v in cpu.seconds().values()), 2),
                    "stages_s": stage_seconds(state.state_details.flow_run_id, expected=7),
                    "stages_cpu_s": cpu.seconds(),
                }
            )
    return server_start_s, runs


def _watch_rss(proc: subprocess.Popen, peak: dict[str, float], every_s: float = 0.25) -> None:
    """Sample the resident memory of proc and its descendants until it ends: the peak of their sum."""
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        total = 0
        with contextlib.suppress(psutil.Error):
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a child may end while we look
                    total += p.memory_info().rss
        peak["tree"] = max(peak.get("tree", 0.0), total / 2**20)
        time.sleep(every_s)


_LOG_TIME = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) \| \w+ +\| Flow run '[^']+' - (Beginning flow run|Finished in state)",
    re.MULTILINE,
)


def _flow_span(log: str) -> float | None:
    """Seconds from the flow run's first log line to its last, read from the CLI's log (None: not found)."""
    marks = [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s, _ in _LOG_TIME.findall(log)]
    return round(marks[-1] - marks[0], 2) if len(marks) >= 2 else None


def run_cli(
    source: Path, profile: Path, tmp: Path, repeat: int, setup: bool = True
) -> tuple[float | None, list[dict[str, Any]]]:
    """`medsafe data` as a user runs it, `repeat` times: a fresh process that imports the project and
    starts Prefect's temporary server itself (PREFECT_API_URL unset; a PREFECT_HOME of its own). With
    `setup` that PREFECT_HOME is first prepared as `make install` prepares a user's (`medsafe setup`, timed
    apart); without it the first run's server creates its database. Wall seconds of `medsafe setup` (None
    without it), and per run: wall, CPU seconds of every process it started, the flow's own span from its
    log, and peak memory."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp / "prefect_home")
    medsafe = Path(sys.executable).with_name("medsafe")
    setup_s = None
    if setup:
        t0 = time.perf_counter()
        subprocess.run([str(medsafe), "setup"], env=env, check=True, capture_output=True)
        setup_s = round(time.perf_counter() - t0, 2)
    runs = []
    for n in range(1, repeat + 1):
        workdir = tmp / f"cli_workdir_{n}"
        probe = speed_probe()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        command = [str(medsafe), "data", "--profile", str(profile), "--source", str(source)]
        proc = subprocess.Popen(
            [*command, "--workdir", str(workdir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        peak: dict[str, float] = {}
        watcher = threading.Thread(target=_watch_rss, args=(proc, peak), daemon=True)
        watcher.start()
        log, _ = proc.communicate()
        wall = time.perf_counter() - t0
        watcher.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"medsafe data failed (exit {proc.returncode}); its log ends:\n{log[-3000:]}")
        flow_s = _flow_span(log)
        runs.append(
            {
                "workdir": workdir,
                "speed_probe_s": probe,
                # without `medsafe setup`, run 1's temporary server first creates and migrates its
                # database (on a PREFECT_HOME nobody prepared); later runs find it there
                "prefect_database": "created by this run" if n == 1 and not setup else "existing",
                "cli_wall_s": round(wall, 2),
                "flow_wall_s": flow_s,
                "before_flow_s": round(wall - flow_s, 2) if flow_s is not None else None,
                "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
                "peak_rss_mib": {
                    "all_processes": round(peak.get("tree", 0.0), 1),
                    "largest_process": round(after.ru_maxrss / 1024, 1),
                },
            }
        )
    return setup_s, runs


def cli_figures(
    args: argparse.Namespace, source: Path, setup_s: float | None, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every CLI run's figures: rows/s with and without what comes before the flow (imports, server)."""
    report = json.loads(
        (runs[-1]["workdir"] / "reports/data_quality/summary.json").read_text(encoding="utf-8")
    )
    return {
        "input": args.input,
        "input_rows": args.rows,
        "input_mib": round(source.stat().st_size / 2**20, 1),
        "medsafe_setup_s": setup_s,  # once per PREFECT_HOME, before the runs (make install runs it)
        "runs": [
            {k: v for k, v in r.items() if k != "workdir"}
            | {
                "rows_per_s_with_server_start": round(args.rows / r["cli_wall_s"]),
                "rows_per_s_flow_only": round(args.rows / r["flow_wall_s"]) if r["flow_wall_s"] else None,
                "rows_per_cpu_s": round(args.rows / r["cpu_s"]),
            }
            for r in runs
        ],
        "processed": report["stages"]["processed"],
        "quarantined": report["quarantine"]["by_reason"],
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def generate(args: argparse.Namespace, tmp: Path) -> Path:
    from tasks.risk.classifier import RiskClassifier

    pools = sentence_pools(RiskClassifier.from_yaml())
    source = tmp / "synthetic_medical_o1.jsonl"
    with source.open("w", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in synthetic_lines(args.rows, pools, args))
    return source


def figures(
    args: argparse.Namespace, source: Path, server_start_s: float, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """The median run's figures (by wall time), and every run's wall time and speed probe."""
    result = sorted(runs, key=lambda r: r["flow_wall_s"])[len(runs) // 2]
    report = json.loads((result["workdir"] / "reports/data_quality/summary.json").read_text(encoding="utf-8"))
    cpu = result["stages_cpu_s"]
    return {
        "input_rows": args.rows,
        "input_mib": round(source.stat().st_size / 2**20, 1),
        "mean_bytes_per_row": round(source.stat().st_size / args.rows),
        "prefect_server_start_s": server_start_s,
        "runs": [
            {
                "flow_wall_s": r["flow_wall_s"],
                "speed_probe_s": r["speed_probe_s"],
                "stages_wall_s": r["stages_s"],
            }
            for r in runs
        ],
        "flow_wall_s": result["flow_wall_s"],
        "rows_per_s": round(args.rows / result["flow_wall_s"]),
        "best_rows_per_s": round(args.rows / min(r["flow_wall_s"] for r in runs)),
        "speed_probe_s": result["speed_probe_s"],
        "flow_cpu_s": result["flow_cpu_s"],
        "rows_per_cpu_s": round(args.rows / result["flow_cpu_s"]),
        "stages": {
            name: {
                "wall_s": wall,
                "cpu_s": cpu.get(name, {}).get("main"),
                "worker_cpu_s": cpu.get(name, {}).get("workers"),
                "peak_rss_mib": cpu.get(name, {}).get("peak_rss_mib"),
            }
            for name, wall in result["stages_s"].items()
        },
        "orchestration_s": round(result["flow_wall_s"] - sum(result["stages_s"].values()), 2),
        "peak_rss_mib": {
            "main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "largest_child": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        },
        "gate_passed": result["summary"]["gate_passed"],
        "processed": report["stages"]["processed"],
        "quarantined": report["quarantine"]["by_reason"],
        "risk_train": report["splits"]["train"]["risk"],
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--risky-share", type=float, default=0.25, help="Questions with high-risk wording.")
    parser.add_argument("--dup-share", type=float, default=0.03, help="Exact copies of an earlier row.")
    parser.add_argument(
        "--near-share", type=float, default=0.03, help="Copies with one answer character changed."
    )
    parser.add_argument("--malformed-share", type=float, default=0.002)
    parser.add_argument(
        "--input",
        choices=("generated", "repetitive"),
        default="generated",
        help="generated: varied rows (the figures before issue 14); repetitive: a share of answers from a few"
        " hundred refusal templates and questions behind shared framings, as in real safety data.",
    )
    parser.add_argument(
        "--refusal-share",
        type=float,
        default=0.2,
        help="repetitive: new rows answered by a refusal template.",
    )
    parser.add_argument(
        "--templates",
        type=int,
        default=300,
        help="repetitive: refusal templates per language (at most 288 en, 175 zh).",
    )
    parser.add_argument(
        "--frame-share", type=float, default=0.3, help="repetitive: other questions behind a shared framing."
    )
    parser.add_argument("--target-size", type=int, default=2000, help="sampling.target_size of the profile.")
    parser.add_argument(
        "--cli",
        action="store_true",
        help="Run `medsafe data` in a fresh process, as a user does: its own server start included.",
    )
    parser.add_argument(
        "--no-setup",
        action="store_true",
        help="--cli: skip `medsafe setup` on the fresh PREFECT_HOME, so the first run's server creates "
        "Prefect's database (a machine where nobody ran `make install` or `medsafe setup`).",
    )
    parser.add_argument(
        "--generate-only", action="store_true", help="Write the input (under --keep) and stop."
    )
    parser.add_argument("--keep", type=Path, help="Write everything here instead of a temporary folder.")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Run the flow this many times (fresh workdirs); report the median.",
    )
    args = parser.parse_args()
    if args.generate_only and not args.keep:
        parser.error("--generate-only needs --keep DIR: the input is written there")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="bench_data_flow_") as tmp_name:
        tmp = args.keep.resolve() if args.keep else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        source = generate(args, tmp)
        if args.generate_only:
            print(source)
            return
        if args.cli:
            profile = write_profile(tmp, args.target_size)
            setup_s, runs = run_cli(source, profile, tmp, max(1, args.repeat), setup=not args.no_setup)
            stats = cli_figures(args, source, setup_s, runs)
        else:
            server_start_s, runs = run_flows(
                source, write_profile(tmp, args.target_size), tmp, max(1, args.repeat)
            )
            stats = {"input": args.input} | figures(args, source, server_start_s, runs)
    text = json.dumps(stats, indent=1, ensure_ascii=False)  # the benchmark's report is its output
    print(re.sub(r"\{\n\s+([^{}]*?)\n\s+\}", lambda m: "{" + " ".join(m.group(1).split()) + "}", text))


if __name__ == "__main__":
    main()
