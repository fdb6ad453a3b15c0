"""Benchmark the whole data flow (download -> ... -> quality gate -> report) on generated medical-o1 rows.

    python benchmarks/bench_data_flow.py                   # 50,000 rows, a temporary Prefect server
    python benchmarks/bench_data_flow.py --rows 100000 --keep runs/bench   # keep the workdir to inspect
    python benchmarks/bench_data_flow.py --repeat 3        # three runs on one server: the median's figures

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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import resource
import tempfile
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
    for _ in range(n):
        roll = rng.random()
        if roll < malformed_share:
            bad += 1
            yield MALFORMED[bad % len(MALFORMED)]
            continue
        if recent and roll < malformed_share + dup_share + near_share:
            base = rng.choice(recent)
            row = base if roll < malformed_share + dup_share else _near_copy(rng, base)
        else:
            lang = "zh" if rng.random() < 0.5 else "en"
            pool, sep = pools[lang], ("" if lang == "zh" else " ")
            connect = ZH_CONNECT if lang == "zh" else EN_CONNECT
            row = {
                "Question": _question(rng, pool, lang, rng.random() < risky_share),
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

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Finished in state"):
            self.marks.append((getattr(record, "task_name", "?"), *_cpu()))

    def seconds(self) -> dict[str, dict[str, float]]:
        pairs = zip(self.marks, self.marks[1:], strict=False)
        return {
            name: {"main": round(m - pm, 2), "workers": round(c - pc, 2)}
            for (_, pm, pc), (name, m, c) in pairs
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
    parser.add_argument("--target-size", type=int, default=2000, help="sampling.target_size of the profile.")
    parser.add_argument("--keep", type=Path, help="Write everything here instead of a temporary folder.")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Run the flow this many times (fresh workdirs); report the median.",
    )
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="bench_data_flow_") as tmp_name:
        tmp = args.keep.resolve() if args.keep else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        source = generate(args, tmp)
        server_start_s, runs = run_flows(
            source, write_profile(tmp, args.target_size), tmp, max(1, args.repeat)
        )
        stats = figures(args, source, server_start_s, runs)
    text = json.dumps(stats, indent=1, ensure_ascii=False)  # the benchmark's report is its output
    print(re.sub(r"\{\n\s+([^{}]*?)\n\s+\}", lambda m: "{" + " ".join(m.group(1).split()) + "}", text))


if __name__ == "__main__":
    main()
