"""The README's documented training config is a config `train` accepts (docs that are true)."""

import re
import tomllib
from pathlib import Path

from training.config import TrainConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_training_config_block_validates():
    block = re.search(r"```toml\n(blend_popularity.*?)```", README.read_text(), re.S)
    assert block, "README lost its training config example"
    documented = TrainConfig.model_validate(tomllib.loads(block.group(1)))
    defaults = TrainConfig()
    assert documented.als == defaults.als and documented.weighting == defaults.weighting
