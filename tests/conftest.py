from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.pop("DEEPSEEK_API_KEY", None)  # tests opt in to a teacher explicitly

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout (real data); skips where a user's clone has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_server():
    """A real, temporary Prefect server (SQLite) for the whole session: flows run and are recorded on it.
    Without flow-run heartbeats, as the CLI's temporary server (flows/server.py): each flow run's end would
    wait out the heartbeat thread's one-second sleep."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    no_heartbeats = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    with prefect_test_harness(server_startup_timeout=120), temporary_settings(updates=no_heartbeats):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train with one torch thread: two OpenMP threads on two shared cores spin against other processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def postgres_server():
    """A real, temporary PostgreSQL server for the session (tests/support/postgres.py); its password is in
    PGPASSWORD for the session, as users are told to do. Skips where PostgreSQL is not installed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pg_support", REPO / "tests" / "support" / "postgres.py")
    pg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pg)
    if reason := pg.why_not_available():
        pytest.skip(reason)
    before = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = pg.PASSWORD
    try:
        with pg.PostgresServer() as server:
            yield server
    finally:
        os.environ.pop("PGPASSWORD") if before is None else os.environ.update(PGPASSWORD=before)


@pytest.fixture(params=["sqlite", "postgres"])
def cache_url(request: pytest.FixtureRequest) -> str | None:
    """Each judge-cache backend in turn: None (the SQLite file in the workdir) or a fresh PostgreSQL
    database's URL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").new_database()
