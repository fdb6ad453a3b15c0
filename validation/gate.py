"""The data quality gate: Great Expectations checkpoints over every table the training stages read.

Each run builds an in-memory GX context (suites from the profile's config, one pandas DataFrame asset,
validation definition and checkpoint per table - a checkpoint hands one DataFrame to all of its
validation definitions) and a Data Docs site under reports/data_quality/data_docs that shows this run.
The verdict is a GateResult; a failed gate raises QualityGateFailed naming each failed expectation.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.execution_engine.pandas_execution_engine as gx_pandas
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from prefect import get_run_logger

from tasks.core.config import DataConfig, GateConfig, SamplingConfig
from tasks.core.io import write_json
from tasks.core.stage import stage
from tasks.core.workdir import Workdir
from validation.report import build_data_report, publish_artifacts
from validation.results import FailedExpectation, GateResult, QualityGateFailed
from validation.suites import build_suites
from validation.tables import OVERLAP_COLUMNS, build_frames, expected_safety_prompts, load_tables

log = logging.getLogger(__name__)

DATASOURCE = "medsafe"
DOCS_SITE = "medsafe_data_quality"
BATCH = "whole_table"
_NOT_EXPECTED_KWARGS = {"column", "column_list", "batch_id"}


def open_context(workdir: Workdir) -> Any:
    """An in-memory GX context whose only Data Docs site is built into reports/data_quality/data_docs."""
    site = {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(workdir.data_docs),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        data_docs_sites={DOCS_SITE: site},
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    # the site shows this run's data only: pages of an earlier run would describe tables that no longer exist
    shutil.rmtree(workdir.data_docs, ignore_errors=True)
    return gx.get_context(mode="ephemeral", project_config=config)


def _batch_definition(context: Any, table: str) -> Any:
    sources = context.data_sources.all()
    source = sources[DATASOURCE] if DATASOURCE in sources else context.data_sources.add_pandas(DATASOURCE)
    return source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(BATCH)


def _checkpoint(context: Any, table: str, suite: gx.ExpectationSuite) -> gx.Checkpoint:
    suite = context.suites.add(suite)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=f"{table}_validation", data=_batch_definition(context, table), suite=suite
        )
    )
    # BASIC carries what a failure message shows (observed value, counts, sample of unexpected values);
    # SUMMARY's value counts and index lists cost a second pass over every failing column
    return context.checkpoints.add(
        gx.Checkpoint(
            name=f"medsafe_gate_{table}",
            validation_definitions=[validation],
            actions=[],
            result_format={"result_format": "BASIC"},
        )
    )


def _observed(result: dict[str, Any], exception_info: Any, column: str | None = None) -> str:
    error = _exception_message(exception_info)
    if error:
        return f"error: {error}"
    missing = (result.get("details") or {}).get("mismatched", {}).get("missing")
    if missing:
        return f"missing columns: {', '.join(map(str, missing))}"
    if "observed_value" in result:
        value = result["observed_value"]
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    if "unexpected_count" in result:
        # every overlap GE kept (up to 20) is named: the ids are what the user must act on
        shown = 20 if column in OVERLAP_COLUMNS else 5
        sample = list(result.get("partial_unexpected_list") or [])[:shown]
        return (
            f"{result['unexpected_count']} unexpected rows "
            f"({result.get('unexpected_percent', 0):.1f}%), e.g. {sample}"
        )
    return str(result) or "nothing observed"


def _exception_message(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    return str(nested[0].get("exception_message")) if nested else None


def _failures(suite_name: str, validation: Any) -> list[FailedExpectation]:
    failed = []
    for r in validation.results:
        if r.success:
            continue
        kwargs = dict(r.expectation_config.kwargs)
        shown = [f"{k}={v}" for k, v in kwargs.items() if k not in _NOT_EXPECTED_KWARGS and v is not None]
        expected = ", ".join(shown) or "every value to pass"
        column = kwargs.get("column") or (
            ",".join(kwargs["column_list"]) if kwargs.get("column_list") else None
        )
        failed.append(
            FailedExpectation(
                suite_name,
                r.expectation_config.type,
                column,
                _observed(r.result, r.exception_info, column),
                expected,
            )
        )
    return failed


@contextmanager
def _no_batch_fingerprints() -> Iterator[None]:
    """GX hashes every cell of an in-memory DataFrame batch below HASH_THRESHOLD bytes into a
    `pandas_data_fingerprint` batch marker, which nothing here reads: 0.7 s of a 50k-row gate, mostly the
    text columns. Off while the gate's checkpoints run (tests/validation checks the setting still exists)."""
    before = gx_pandas.HASH_THRESHOLD
    gx_pandas.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        gx_pandas.HASH_THRESHOLD = before


def run_quality_gate(
    workdir: Workdir,
    gate_cfg: GateConfig,
    sampling_cfg: SamplingConfig,
    data_cfg: DataConfig | None = None,
    *,
    build_docs: bool = True,
    paths: dict[str, Path] | None = None,
) -> GateResult:
    """Validate processed splits and RL prompts (the workdir's, or `paths`), build Data Docs, and return the
    verdict (raises only on missing inputs)."""
    data_cfg = data_cfg or DataConfig()
    tables = load_tables(paths or workdir)
    frames: dict[str, pd.DataFrame] = build_frames(tables, data_cfg.near_dup_threshold)
    suites = build_suites(gate_cfg, sampling_cfg, data_cfg, expected_safety_prompts(tables))
    context = open_context(workdir)
    result = GateResult(passed=True)
    run_id = gx.RunIdentifier(run_name="medsafe_gate")  # one run name and time across the checkpoints
    with _no_batch_fingerprints():
        for table, suite in suites.items():
            checkpoint = _checkpoint(context, table, suite)
            run = checkpoint.run(batch_parameters={"dataframe": frames[table]}, run_id=run_id)
            for validation in run.run_results.values():
                stats = {k: float(v) if v is not None else None for k, v in validation.statistics.items()}
                result.suites[suite.name] = stats | {"rows": len(frames[table])}
                result.failed += _failures(suite.name, validation)
            result.passed = result.passed and bool(run.success)
    if build_docs:  # once for all results (the store keeps them): per checkpoint it re-renders the site
        context.build_data_docs(site_names=[DOCS_SITE])
    index = workdir.data_docs / "index.html"
    result.data_docs_index = str(index) if index.is_file() else None
    log.info(
        "quality gate %s: %d failed expectations", "passed" if result.passed else "FAILED", len(result.failed)
    )
    return result


@stage
def quality_gate_task(
    tables: dict[str, Path],
    gate_cfg: GateConfig,
    sampling_cfg: SamplingConfig,
    data_cfg: DataConfig,
    workdir: Workdir,
) -> dict[str, Any]:
    """Run the gate on `tables` (validation.tables.table_paths: exactly the files it reads, so only they enter
    the cache key); write reports/data_quality/gate_result.json; on failure build the report, then raise."""
    logger = get_run_logger()
    result = run_quality_gate(workdir, gate_cfg, sampling_cfg, data_cfg, paths=tables)
    write_json(workdir.gate_result, result.to_dict())
    if not result.passed:
        publish_artifacts(build_data_report(workdir, data_cfg, sampling_cfg))
        error = QualityGateFailed(result)
        logger.error(str(error))
        raise error
    logger.info("quality gate passed (%d suites); data docs: %s", len(result.suites), result.data_docs_index)
    return {
        "passed": True,
        "suites": result.suites,
        "data_docs_index": result.data_docs_index,
        "result_path": str(workdir.gate_result),
    }
