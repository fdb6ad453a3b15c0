"""Benchmark the download (local file) and cleanup stages on synthetic medical-o1 rows: rows/s and peak
memory.

    python benchmarks/bench_cleanup.py --rows 50000
    python benchmarks/bench_cleanup.py --rows 50000 --scale 0.2     # short rows
    python benchmarks/bench_cleanup.py --rows 20000 --tracemalloc   # Python-heap peak too (slower run)
    python benchmarks/bench_cleanup.py --rows 200000 --shared-share 1.0   # every answer one of 300
    python benchmarks/bench_cleanup.py --source runs/rep/synthetic_medical_o1.jsonl   # bench_data_flow's rows

Rows are in the upstream schema (Question, Complex_CoT, Response), half Chinese and half English, with
a share of exact copies and of near copies (one word changed) so deduplication has work to do.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from tasks.core.config import DataConfig
from tasks.core.io import write_jsonl
from tasks.prepare.cleanup import clean_rows
from tasks.prepare.download import download_sources
from tasks.prepare.raw_files import iter_raw_records

SYLLABLES = (
    "ka",
    "ri",
    "to",
    "mel",
    "an",
    "sep",
    "tic",
    "ro",
    "neu",
    "lo",
    "gy",
    "car",
    "dia",
    "pul",
    "mo",
    "hep",
    "at",
    "ic",
    "ren",
    "al",
    "gas",
    "tro",
    "der",
    "ma",
    "ped",
    "ia",
)
ZH_CHARS = "".join(chr(0x4E00 + i) for i in range(0, 6000, 2))  # 3,000 Han characters


def _vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    return ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(size)]


def _text(rng: random.Random, vocab: list[str], zh: bool, n_units: int) -> str:
    if zh:
        return (
            "，".join("".join(rng.choices(ZH_CHARS, k=rng.randint(4, 12))) for _ in range(n_units // 4 + 1))
            + "。"
        )
    return " ".join(rng.choices(vocab, k=n_units)) + "."


def synthetic_rows(
    n: int,
    seed: int,
    exact_share: float,
    near_share: float,
    scale: float = 1.0,
    shared_share: float = 0.0,
    templates: int = 300,
) -> Iterator[dict[str, str]]:
    """n medical-o1 rows; copies refer back to a random earlier original. A shared_share of the new rows
    are short questions answered by one of `templates` fixed answers (Zipf-like weights), as refusals
    repeat in real safety data."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    originals: list[dict[str, str]] = []
    shared = random.Random(seed + 1)  # its own generator: the default rows stay as they were
    answers = [
        _text(shared, vocab, k % 2 == 1, max(2, int(scale * shared.randint(25, 50))))
        for k in range(templates)
    ]
    cum_weights = list(itertools.accumulate(1 / (k + 1) for k in range(templates)))
    for _ in range(n):
        roll = rng.random()
        if originals and roll < exact_share:
            yield dict(rng.choice(originals))
            continue
        if originals and roll < exact_share + near_share:
            row = dict(rng.choice(originals))
            words = row["Response"].split(" ") if " " in row["Response"] else list(row["Response"])
            words[rng.randrange(len(words))] = "changed"
            row["Response"] = (" " if " " in row["Response"] else "").join(words)
            yield row
            continue
        zh = rng.random() < 0.5
        if shared_share and rng.random() < shared_share:
            k = rng.choices(range(templates), cum_weights=cum_weights)[0]
            row = {
                "Question": _text(rng, vocab, k % 2 == 1, max(2, int(scale * rng.randint(8, 16)))),
                "Complex_CoT": _text(rng, vocab, k % 2 == 1, max(2, int(scale * rng.randint(10, 30)))),
                "Response": answers[k],
            }
            if len(originals) < 5000:
                originals.append(row)
            yield row
            continue
        row = {
            "Question": _text(rng, vocab, zh, max(2, int(scale * rng.randint(20, 60)))),
            "Complex_CoT": _text(rng, vocab, zh, max(2, int(scale * rng.randint(80, 200)))),
            "Response": _text(rng, vocab, zh, max(2, int(scale * rng.randint(30, 90)))),
        }
        if len(originals) < 5000:
            originals.append(row)
        yield row


def run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    rows, trace = args.rows, args.tracemalloc
    source = args.source or workdir / "synthetic_medical_o1.jsonl"
    if args.source:  # e.g. the input bench_data_flow.py --generate-only wrote
        with source.open("rb") as fh:
            rows = sum(1 for _ in fh)
    else:
        write_jsonl(
            source,
            synthetic_rows(
                rows,
                args.seed,
                args.exact_share,
                args.near_share,
                args.scale,
                args.shared_share,
                args.templates,
            ),
        )
    if trace:
        tracemalloc.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    manifest = download_sources([str(source)], workdir / "data" / "raw")
    t1, cpu1 = time.perf_counter(), time.process_time()
    result = clean_rows(iter_raw_records(manifest), DataConfig())
    t2, cpu2 = time.perf_counter(), time.process_time()
    write_jsonl(workdir / "cleaned.jsonl", result.kept)
    write_jsonl(workdir / "quarantine.jsonl", result.quarantined)
    t3, cpu3 = time.perf_counter(), time.process_time()
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else float("nan")
    size = source.stat().st_size
    return {
        "rows": rows,
        "input_mib": round(size / 2**20, 1),
        "mean_bytes_per_row": round(size / rows),
        "kept": len(result.kept),
        "quarantined": len(result.quarantined),
        **{f"quarantined_{reason}": n for reason, n in result.counts.items()},
        "wall_s": {
            "download": round(t1 - t0, 2),
            "read_clean_dedup": round(t2 - t1, 2),
            "write": round(t3 - t2, 2),
            "total": round(t3 - t0, 2),
        },
        "cpu_s": {
            "download": round(cpu1 - cpu0, 2),
            "read_clean_dedup": round(cpu2 - cpu1, 2),
            "write": round(cpu3 - cpu2, 2),
            "total": round(cpu3 - cpu0, 2),
        },
        "rows_per_wall_s": round(rows / (t3 - t0)),
        "rows_per_cpu_s": round(rows / (cpu3 - cpu0)),
        "cleanup_rows_per_cpu_s": round(rows / (cpu2 - cpu1)),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "python_heap_peak_mib": round(heap_peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--exact-share", type=float, default=0.05, help="Share of rows that are exact copies."
    )
    parser.add_argument(
        "--near-share",
        type=float,
        default=0.05,
        help="Share of rows that are near copies (one word changed).",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="Multiply text lengths (0.2: short rows of about 250 characters).",
    )
    parser.add_argument(
        "--shared-share",
        type=float,
        default=0.0,
        help="Share of new rows answered by one of --templates fixed answers (1.0: every answer repeats).",
    )
    parser.add_argument("--templates", type=int, default=300, help="How many shared answers there are.")
    parser.add_argument("--source", type=Path, help="Clean this JSONL file (one row a line) instead.")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="Also measure the Python heap peak (slows the run)."
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_cleanup_") as tmp:
        stats = run(args, Path(tmp))
    print(json.dumps(stats, indent=2))  # the benchmark's report is its output


if __name__ == "__main__":
    main()
