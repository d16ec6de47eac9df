"""What the end-to-end tests share: the CLI runner, one synthetic mall, training into a folder and a
Redis key prefix per test. Each test file trains its own models folder because tests publish into it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.model_bundle import current_version
from tests.fixtures.redis_server import delete_prefix, shared_url, unique_prefix


def mallrec(*args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def train(data: Path, models: Path, *options: str) -> str:
    mallrec("train", "--events", str(data / "events.csv"), "--items", str(data / "items.csv"),
            "--members", str(data / "members.csv"), "--out", str(models), *options)
    version = current_version(models)
    assert version
    return version


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mall")
    mallrec("synth", "--members", "300", "--items", "200", "--events", "6000", "--out", str(out))
    return out


@pytest.fixture
def redis_url() -> object:
    url, prefix = shared_url(), unique_prefix()
    yield url, prefix
    delete_prefix(url, prefix)
