"""The README's configuration block is the plugin's defaults, option for option."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from beetsplug.unmarked import CONFIG_DEFAULTS
from beetsplug.unmarked.engine import Settings

pytestmark = pytest.mark.fast

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_defaults() -> dict:
    text = README.read_text()
    block = re.search(r"Every option, with its default:\s*```yaml\n(.*?)```", text, re.S)
    assert block, "the README has a configuration block"
    return yaml.safe_load(block.group(1))["unmarked"]


def test_readme_lists_every_option_with_its_default() -> None:
    assert readme_defaults() == CONFIG_DEFAULTS


def test_engine_defaults_are_the_config_defaults() -> None:
    assert (Settings().batch_size, Settings().batch_seconds) == (
        CONFIG_DEFAULTS["batch_size"], CONFIG_DEFAULTS["batch_seconds"])
