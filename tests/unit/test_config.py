import pytest

from training.config import ConfigError, TrainConfig, format_duration, load_config, parse_duration


@pytest.mark.parametrize("text,seconds", [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45),
                                          ("2w", 14 * 86400), (3600, 3600), ("1.5d", 129600)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["off", "none", None])
def test_duration_off(text):
    assert parse_duration(text) is None


@pytest.mark.parametrize("text", ["30 days", "-1d", "x", True, 0])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration():
    assert format_duration(86400) == "1d" and format_duration(90) == "90s" and format_duration(None) == "off"


def test_defaults_without_a_file():
    assert load_config(None) == TrainConfig()


def test_toml_round_trip(tmp_path):
    cfg = TrainConfig.model_validate({"als": {"factors": 32}, "weighting": {"half_life": "2d",
                                                                            "decay_from": "member"}})
    f = tmp_path / "c.toml"
    f.write_text(cfg.to_toml())
    assert load_config(f) == cfg


def test_half_life_off_round_trips(tmp_path):
    cfg = TrainConfig.model_validate({"weighting": {"half_life": "off"}})
    f = tmp_path / "c.toml"
    f.write_text(cfg.to_toml())
    assert load_config(f).weighting.half_life is None


def test_errors_name_file_and_every_field(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[als]\nfactors = -3\nalpha = "x"\n[weighting]\nhalf_life = "soon"\n[nope]\na = 1\n')
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert "bad.toml" in msg and "als.factors" in msg and "als.alpha" in msg
    assert "weighting.half_life" in msg and "nope" in msg


def test_syntax_error_names_the_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[als\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(f)


def test_yaml_config(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("als:\n  factors: 16\nweighting:\n  half_life: off\n")
    cfg = load_config(f)
    assert cfg.als.factors == 16 and cfg.weighting.half_life is None  # YAML's `off` is a bool: handled


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
