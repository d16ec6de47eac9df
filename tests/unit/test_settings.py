from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings, SettingsError


def test_flags_override_environment_override_defaults() -> None:
    env = {"REDIS_URL": "redis://r:6379/1", "MALLREC_PORT": "6000", "MALLREC_MAX_COUNT": "20"}
    s = Settings.load(env, port=7000, models_dir=Path("m"), redis_url=None)
    assert (s.redis_url, s.port, s.max_count, s.models_dir) == ("redis://r:6379/1", 7000, 20, Path("m"))
    assert Settings.load({}).redis_url is None  # no URL: the embedded Redis
    assert Settings.load({}).reuse_port is False


def test_bad_values_name_the_flag_or_variable() -> None:
    with pytest.raises(SettingsError, match="--port"):
        Settings.load({}, port=70000)
    with pytest.raises(SettingsError, match="MALLREC_REDIS_TIMEOUT"):
        Settings.load({"MALLREC_REDIS_TIMEOUT": "soon"})
