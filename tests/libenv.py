"""A real beets library on disk, driven both in-process and through the `beet` command.

Built on beets' own ``beets.test.helper``: ``TestHelper`` gives an isolated
config, BEETSDIR/HOME in a temp dir and a ``Library`` on disk; ``PluginMixin``
loads the plugin in-process. A ``config.yaml`` with the same settings is
written into BEETSDIR so that the real ``beet`` command, run as a subprocess,
sees the same library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from beets.library import Item

from beetsplug.unmarked.beets_compat import PluginMixin, TestHelper, refresh_library_config

from .audio import make_track

BEET = shutil.which("beet", path=os.path.dirname(sys.executable)) or "beet"


class LibraryEnv(PluginMixin, TestHelper):
    """One test's library: music dir, database, config file, and the plugin."""

    plugin = "unmarked"
    db_on_disk = True

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.extra_settings = settings or {}

    def setup_beets(self) -> None:
        super().setup_beets()
        self.settings: dict[str, Any] = {
            "directory": str(self.lib_path),
            "library": str(self.temp_path / "library.db"),
            "plugins": ["unmarked"],
            "create_backup_before_migrations": False,
            "paths": {"default": "$albumartist/$album/$track $title", "singleton": "Singles/$artist - $title"},
            "import": {"write": False, "autotag": False, "quiet": True},
            "ui": {"color": False},
            **self.extra_settings,
        }
        self.configure()

    def configure(self, **settings: Any) -> None:
        """Apply settings in-process and in BEETSDIR/config.yaml."""
        self.settings.update(settings)
        self.config.set(self.settings)
        self.config_path.write_text(yaml.safe_dump(self.settings, allow_unicode=True))
        # Library caches path formats and replacements at creation.
        refresh_library_config(self.lib)

    @property
    def config_path(self) -> Path:
        return self.temp_path / "config.yaml"

    @property
    def incoming(self) -> Path:
        path = self.temp_path / "incoming"
        path.mkdir(exist_ok=True)
        return path

    # --- content -----------------------------------------------------------

    def add_track(self, name: str, tags: dict[str, str], where: Path | None = None) -> Item:
        """Create a real audio file and add it to the library where it lies."""
        path = make_track((where or self.incoming) / name, tags)
        item = Item.from_path(str(path))
        self.lib.add(item)
        return item

    def add_tracks(self, specs: Iterable[tuple[str, dict[str, str]]], where: Path | None = None) -> list[Item]:
        return [self.add_track(name, tags, where) for name, tags in specs]

    def item(self, item_id: int) -> Item:
        item = self.lib.get_item(item_id)
        assert item is not None, f"item {item_id} is gone"
        return item

    def ids(self, query: str = "") -> list[int]:
        return sorted(item.id for item in self.lib.items(query))

    # --- the real command --------------------------------------------------

    def beet(self, *args: str, check: bool = True, timeout: float = 120,
             **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run the installed ``beet`` against this library's config."""
        env = {**os.environ, "BEETSDIR": str(self.temp_path), "HOME": str(self.temp_path)}
        env.update(kwargs.pop("env", {}))
        result = subprocess.run(
            [BEET, *args], capture_output=True, text=True, env=env, timeout=timeout, **kwargs
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"beet {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def beet_ids(self, *query: str) -> list[int]:
        """Item ids that ``beet ls QUERY`` prints."""
        out = self.beet("ls", "-f", "$id", *query).stdout
        return sorted(int(line) for line in out.split())


AUDIO_SUFFIXES = {".flac", ".ogg", ".mp3"}


def audio_files(*roots: Path) -> list[Path]:
    """Every audio file under the roots (beets' partial-copy temp files excluded)."""
    found = []
    for root in roots:
        found += [p for p in root.rglob("*") if p.suffix in AUDIO_SUFFIXES and p.is_file()]
    return sorted(found)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file or directory unwritable, even for root (chattr +i), then restore."""
    as_root = os.geteuid() == 0
    mode = path.stat().st_mode
    path.chmod(mode & ~0o222)
    if as_root:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


@contextmanager
def tmpfs(parent: Path, name: str, size: str) -> Iterator[Path]:
    """A size-limited tmpfs mounted at ``parent/name`` (needs root), unmounted after."""
    mount = parent / name
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
