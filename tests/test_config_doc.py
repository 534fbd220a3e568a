"""The README's configuration block is the plugin's defaults, option for option."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from beetsplug.unmarked import CONFIG_DEFAULTS
from beetsplug.unmarked.engine import Settings

from .libenv import LibraryEnv

pytestmark = pytest.mark.fast

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_defaults() -> dict:
    text = README.read_text()
    block = re.search(r"Every option, with its default:\s*```yaml\n(.*?)```", text, re.S)
    assert block, "the README has a configuration block"
    return yaml.safe_load(block.group(1))["unmarked"]


def test_readme_lists_every_option_with_its_default() -> None:
    assert readme_defaults() == CONFIG_DEFAULTS


def test_a_fresh_configuration_gives_the_engine_what_the_readme_says() -> None:
    """Through beets' own configuration (the plugin loaded, nothing set by the
    user), the engine gets the README's values, not just a copy of a constant."""
    with LibraryEnv() as env:
        settings = Settings.from_config(env.config["unmarked"])
    documented = readme_defaults()
    assert (settings.batch_size, settings.batch_seconds) == (documented["batch_size"], documented["batch_seconds"])
