"""Download stage: turn source names or local files into raw copies under data/raw/ plus a manifest.

Named sources come from the Hugging Face hub through `datasets.load_dataset`; local files (.json array,
.jsonl, .csv, .parquet) are copied unchanged. The schema of each file is recognised from its columns.
`iter_raw_records` (tasks/raw_files.py) reads the copies back and never raises on a bad row: cleanup
quarantines it.

    download_sources(["medical-o1:zh", "data/my_rows.jsonl"], Workdir.at("runs/a").raw)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prefect import get_run_logger

from tasks.core.config import DataConfig
from tasks.core.errors import MedsafeError
from tasks.core.io import write_json, write_jsonl
from tasks.core.stage import stage
from tasks.core.workdir import ASSETS_DIR, Workdir
from tasks.prepare.raw_files import (
    LOCAL_FORMATS,
    SCHEMAS,
    Schema,
    SourceFormatError,
    copy_file,
    inspect_file,
    read_manifest,
    sha256_of,
)

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


class SourceUnavailable(MedsafeError):
    """A named source that cannot be fetched here: no hub access, or a file only the user can supply."""


@dataclass(frozen=True)
class HubSource:
    """A named source: where it lives on the hub (repo None: nowhere) and the file a person can fetch by
    hand."""

    spec: str
    name: str
    schema: str
    repo: str | None
    config: str | None
    manual_file: str
    page: str


MEDICAL_O1_REPO = "FreedomIntelligence/medical-o1-reasoning-SFT"
MEDICAL_O1_FILES = {
    "en": "medical_o1_sft.json",
    "zh": "medical_o1_sft_Chinese.json",
    "en_mix": "medical_o1_sft_mix.json",
    "zh_mix": "medical_o1_sft_mix_Chinese.json",
}
# Published on ModelScope under this id; "delicate-medical-r1:OWNER/NAME" points at another hub copy.
DELICATE_REPO = "krisfu/delicate_medical_r1_data"
NAMED_SOURCES = (
    "medical-o1[:en|zh|en_mix|zh_mix]",
    "delicate-medical-r1[:HUB_ID]",
    "medsafetybench",
    "tiny-samples",
)


def resolve_source(spec: str) -> list[HubSource | Path]:
    """A source name becomes a HubSource (tiny-samples: the shipped files); anything else must be a local
    file."""
    name, _, arg = spec.partition(":")
    if name == "medical-o1":
        config = arg or "en"
        if config not in MEDICAL_O1_FILES:
            raise SourceUnavailable(
                f"source {spec!r}: medical-o1 has configs {', '.join(MEDICAL_O1_FILES)}, not {config!r}"
            )
        page = f"https://huggingface.co/datasets/{MEDICAL_O1_REPO}"
        return [
            HubSource(
                spec,
                f"medical-o1-{config}",
                "medical-o1",
                MEDICAL_O1_REPO,
                config,
                MEDICAL_O1_FILES[config],
                page,
            )
        ]
    if name == "delicate-medical-r1":
        repo = arg or DELICATE_REPO
        page = (
            f"https://modelscope.cn/datasets/{DELICATE_REPO}"
            if repo == DELICATE_REPO
            else f"https://huggingface.co/datasets/{repo}"
        )
        return [
            HubSource(
                spec,
                "delicate-medical-r1",
                "delicate-medical-r1",
                repo,
                None,
                "delicate_medical_r1_data.jsonl",
                page,
            )
        ]
    if spec == "medsafetybench":
        page = (
            "https://github.com/AI4LIFE-GROUP/med-safety-bench (datasets/, "
            "saved as CSV with columns harmful_medical_request, safe_response)"
        )
        return [HubSource(spec, "medsafetybench", "medsafetybench", None, None, "medsafetybench.csv", page)]
    if spec == "tiny-samples":
        files = sorted(p for p in (ASSETS_DIR / "samples").glob("*") if p.suffix in LOCAL_FORMATS)
        if not files:
            raise SourceUnavailable(
                "source 'tiny-samples': no sample files under "
                f"{ASSETS_DIR / 'samples'}; reinstall the project or set MEDSAFE_ASSETS"
            )
        return list(files)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() not in LOCAL_FORMATS:
            raise SourceFormatError(
                f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(LOCAL_FORMATS)}"
            )
        return [path]
    raise SourceUnavailable(
        f"source {spec!r} is neither a known name ({', '.join(NAMED_SOURCES)}) nor an existing file; "
        f"pass a name or the path of a {'/'.join(LOCAL_FORMATS)} file"
    )


def source_inputs(sources: list[str]) -> list[str | Path]:
    """Sources as task inputs: local files (and the samples folder) as Path, so editing them invalidates the
    cache.
    """
    out: list[str | Path] = []
    for spec in sources:
        path = Path(spec).expanduser()
        out.append(ASSETS_DIR / "samples" if spec == "tiny-samples" else path if path.is_file() else spec)
    return out


# ---- hub access -------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it only once, at import)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def hub_unreachable(endpoint: str, timeout_s: float = 3.0) -> str | None:
    """Why the hub cannot be reached, or None; a 3-second TCP probe instead of the libraries' minute of
    retries."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy a direct probe says nothing
    url = urlparse(endpoint)
    try:
        with socket.create_connection(
            (url.hostname or "", url.port or (443 if url.scheme == "https" else 80)), timeout=timeout_s
        ):
            return None
    except OSError as exc:
        return f"the hub at {endpoint} cannot be reached ({exc.strerror or exc})"


@contextlib.contextmanager
def _forced_offline(on: bool) -> Iterator[None]:
    """Make huggingface_hub and datasets honour an HF_HUB_OFFLINE set after they were imported."""
    import datasets
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    if on:
        constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def unavailable(src: HubSource, raw_dir: Path, why: str, hub: str = "huggingface") -> SourceUnavailable:
    hub_name = "ModelScope" if hub == "modelscope" else "Hugging Face"
    where = (
        f"{hub_name} dataset {src.repo}" + (f", config {src.config}" if src.config else "")
        if src.repo
        else f"not on the {hub_name} hub"
    )
    return SourceUnavailable(
        f"source '{src.spec}' ({where}) is not available: {why}. "
        f"Download {src.manual_file} from {src.page}, then either put it at {raw_dir / src.manual_file} "
        f"or pass it with --source /path/to/{src.manual_file}. To "
        "run on the shipped samples instead: --source tiny-samples"
    )


MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
NO_MODELSCOPE = (
    "hub is modelscope but the modelscope package is not installed (pip install 'medsafe[modelscope]')"
)
DATA_PATTERNS = [f"*{ext}" for ext in LOCAL_FORMATS]


def fetch_modelscope(src: HubSource, raw_dir: Path) -> tuple[Path, list[str]]:
    """Fetch a dataset file from ModelScope (the `modelscope` package) into raw/<name><suffix>: the source's
    known file when it has one (medical-o1's per-config JSON), else the repo's first data file."""
    if src.repo is None:
        raise unavailable(src, raw_dir, "it must be supplied as a file", "modelscope")
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise unavailable(
            src,
            raw_dir,
            NO_MODELSCOPE,
            "modelscope",
        ) from None
    endpoint = os.environ.get("MODELSCOPE_DOMAIN", MODELSCOPE_ENDPOINT)
    if probe := hub_unreachable(endpoint if "://" in endpoint else f"https://{endpoint}"):
        raise unavailable(src, raw_dir, probe, "modelscope")
    into = raw_dir / ".modelscope" / src.name
    patterns = [src.manual_file] if src.config else DATA_PATTERNS
    try:
        snapshot_download(src.repo, repo_type="dataset", local_dir=str(into), allow_patterns=patterns)
    except Exception as exc:  # noqa: BLE001 - whatever the hub library raises, the user's remedy is the same
        raise unavailable(
            src, raw_dir, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, "modelscope"
        ) from None
    found = sorted(p for p in into.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_FORMATS)
    wanted = [p for p in found if p.name == src.manual_file] or found
    if not wanted:
        raise unavailable(src, raw_dir, f"no {'/'.join(LOCAL_FORMATS)} file in {src.repo}", "modelscope")
    path = raw_dir / f"{src.name}{wanted[0].suffix.lower()}"
    copy_file(wanted[0], path)
    return path, []


def fetch_hub(src: HubSource, raw_dir: Path, hub: str | None = "huggingface") -> tuple[Path, list[str]]:
    """Load a hub dataset's train split and write it to raw/<name>.jsonl; returns (path, columns)."""
    if hub == "modelscope":
        return fetch_modelscope(src, raw_dir)
    if src.repo is None:
        raise unavailable(src, raw_dir, "it must be supplied as a file")
    from huggingface_hub import constants

    offline = hub_offline()
    why = "offline mode is on (HF_HUB_OFFLINE=1) and the dataset is not in the local Hugging Face cache"
    if not offline and (probe := hub_unreachable(constants.ENDPOINT)):
        raise unavailable(src, raw_dir, probe + " (HF_ENDPOINT names a mirror; --set hub=modelscope)")
    try:
        import datasets

        with _forced_offline(offline):
            ds = datasets.load_dataset(src.repo, src.config, split="train")
    except Exception as exc:  # noqa: BLE001 - whatever the hub library raises, the user's remedy is the same
        raise unavailable(src, raw_dir, why if offline else str(exc).splitlines()[0]) from None
    path = raw_dir / f"{src.name}.jsonl"
    write_jsonl(path, iter(ds))
    return path, list(ds.column_names)


def manual_copy(src: HubSource, raw_dir: Path) -> Path | None:
    """A file the user put at raw/<manual file stem>.<any supported suffix>."""
    stem = Path(src.manual_file).stem
    return next((p for ext in LOCAL_FORMATS if (p := raw_dir / f"{stem}{ext}").is_file()), None)


def recognise(path: Path, columns: list[str]) -> Schema:
    found = set(columns)
    for schema in SCHEMAS:
        if schema.matches(found):
            return schema
    raise SourceFormatError(
        f"{path}: columns {sorted(found) or '(none readable)'} match no known schema; accepted: "
        + "; ".join(s.describe() for s in SCHEMAS)
        + " - rename the columns or convert the file"
    )


# ---- the stage --------------------------------------------------------------------------------


def _unique_name(base: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "source"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _entry(
    spec: str, name: str, origin: str, path: Path, file: str, columns: list[str] | None = None
) -> dict[str, Any]:
    """The manifest entry of one raw file; `path` is read (the user's file, so errors name it), `file` is its
    copy.
    """
    fmt, rows, seen = inspect_file(path)
    schema = recognise(path, columns or seen)
    return {
        "name": name,
        "spec": spec,
        "origin": origin,
        "file": file,
        "format": fmt,
        "schema": schema.name,
        "red_team": schema.red_team,
        "rows": rows,
        "sha256": sha256_of(path),
        "columns": columns or seen,
    }


def _reusable(previous: dict[str, dict[str, Any]], spec: str, raw_dir: Path) -> dict[str, Any] | None:
    """A hub copy fetched by an earlier run in this workdir, unchanged since: no network needed."""
    old = previous.get(spec)
    if old and old["origin"].startswith("hub:") and (raw_dir / old["file"]).is_file():
        return old if sha256_of(raw_dir / old["file"]) == old["sha256"] else None
    return None


def download_sources(sources: list[str | Path], raw_dir: Path, hub: str | None = "huggingface") -> Path:
    """Fetch or copy every source into raw_dir and write raw_dir/manifest.json; returns the manifest path.

    Sources that cannot be had are named all at once, after the others are fetched (and kept in the
    manifest, so the next run reuses them)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = raw_dir / MANIFEST_NAME
    try:
        previous = {e["spec"]: e for e in read_manifest(manifest_path)} if manifest_path.is_file() else {}
    except SourceFormatError:
        previous = {}  # a damaged manifest from an earlier run only costs a fresh download
    entries: list[dict[str, Any]] = []
    missing: list[SourceUnavailable] = []
    taken: set[str] = set()
    for spec in map(str, sources):
        try:
            items = resolve_source("tiny-samples" if Path(spec) == ASSETS_DIR / "samples" else spec)
        except SourceUnavailable as exc:
            missing.append(exc)
            continue
        for item in items:
            if isinstance(item, HubSource) and (old := _reusable(previous, spec, raw_dir)):
                taken.add(old["name"])
                entries.append(old)
            elif isinstance(item, HubSource) and (manual := manual_copy(item, raw_dir)):
                entries.append(
                    _entry(spec, _unique_name(item.name, taken), f"file:{manual}", manual, manual.name)
                )
            elif isinstance(item, HubSource):
                try:
                    path, columns = fetch_hub(item, raw_dir, hub)
                except SourceUnavailable as exc:
                    missing.append(exc)
                    continue
                where = f"modelscope:{item.repo}" if hub == "modelscope" else item.repo
                origin = f"hub:{where}" + (f"/{item.config}" if item.config else "")
                entries.append(_entry(spec, _unique_name(item.name, taken), origin, path, path.name, columns))
            else:
                name = _unique_name(item.stem, taken)
                dest = raw_dir / f"{name}{item.suffix.lower()}"
                entries.append(_entry(spec, name, f"file:{item.resolve()}", item, dest.name))
                copy_file(item, dest)
            log.info(
                "source %s: %d rows (%s schema)",
                entries[-1]["name"],
                entries[-1]["rows"],
                entries[-1]["schema"],
            )
    write_json(manifest_path, {"version": 1, "sources": entries})
    if problem := all_at_once(missing):
        raise problem
    return manifest_path


def all_at_once(missing: list[SourceUnavailable]) -> SourceUnavailable | None:
    """One error naming every unavailable source (the single one itself when there is one)."""
    if len(missing) <= 1:
        return missing[0] if missing else None
    return SourceUnavailable(
        f"{len(missing)} sources are not available here; get them all, then re-run:\n"
        + "\n".join(f"  - {m}" for m in missing)
    )


def missing_sources(
    sources: list[str], raw_dir: Path, hub: str | None = "huggingface"
) -> SourceUnavailable | None:
    """Before a run starts: the named sources this machine cannot get (no copy under raw_dir, no file, the
    hub unreachable), as one error naming them all; None when all can be had. Downloads nothing; one
    3-second probe per hub at most."""
    manifest_path = raw_dir / MANIFEST_NAME
    try:
        previous = {e["spec"]: e for e in read_manifest(manifest_path)} if manifest_path.is_file() else {}
    except SourceFormatError:
        previous = {}
    probes: dict[str, str | None] = {}
    missing: list[SourceUnavailable] = []
    for spec in map(str, sources):
        try:
            items = resolve_source(spec)
        except (SourceUnavailable, SourceFormatError) as exc:
            missing.append(exc if isinstance(exc, SourceUnavailable) else SourceUnavailable(str(exc)))
            continue
        for item in items:
            if (
                not isinstance(item, HubSource)
                or _reusable(previous, spec, raw_dir)
                or manual_copy(item, raw_dir)
            ):
                continue
            if item.repo is None:
                missing.append(
                    unavailable(item, raw_dir, "it must be supplied as a file", hub or "huggingface")
                )
                continue
            if hub == "modelscope":
                import importlib.util

                if importlib.util.find_spec("modelscope") is None:
                    why = NO_MODELSCOPE
                else:
                    endpoint = os.environ.get("MODELSCOPE_DOMAIN", MODELSCOPE_ENDPOINT)
                    endpoint = endpoint if "://" in endpoint else f"https://{endpoint}"
                    why = (
                        probes[endpoint]
                        if endpoint in probes
                        else probes.setdefault(endpoint, hub_unreachable(endpoint))
                    )
            elif hub_offline():
                continue  # the local Hugging Face cache may hold it; the download stage says if not
            else:
                from huggingface_hub import constants

                endpoint = constants.ENDPOINT
                if endpoint not in probes:
                    probe = hub_unreachable(endpoint)
                    probes[endpoint] = probe and probe + " (HF_ENDPOINT names a mirror; --set hub=modelscope)"
                why = probes[endpoint]
            if why:
                missing.append(unavailable(item, raw_dir, why, hub or "huggingface"))
    return all_at_once(missing)


@stage
def download_task(sources: list[str | Path], workdir: Workdir, data_cfg: DataConfig) -> dict[str, Any]:
    """Fetch or copy the sources into data/raw/ (pass local files as Path: see `source_inputs`)."""
    logger = get_run_logger()
    manifest = download_sources(sources or list(data_cfg.sources), workdir.raw, data_cfg.hub)
    entries = read_manifest(manifest)
    for e in entries:
        logger.info("raw %s: %d rows, schema %s, from %s", e["file"], e["rows"], e["schema"], e["origin"])
    return {
        "manifest": str(manifest),
        "rows": sum(e["rows"] for e in entries),
        "sources": {e["name"]: {"rows": e["rows"], "schema": e["schema"]} for e in entries},
    }
