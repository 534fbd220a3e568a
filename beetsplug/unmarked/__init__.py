"""beets-unmarked: tidy each track once and remember which tracks are done.

The plugin object only wires things up: the config (defaults and checks in
config.py), the marker types and the ``unmarked:`` query, the commands, the
import hook and, when beets' own ``web`` plugin is enabled too, the web
extension.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from beets.plugins import BeetsPlugin

from . import markers
from .config import DEFAULTS as CONFIG_DEFAULTS

if TYPE_CHECKING:
    from beets.importer import ImportSession, ImportTask

    from .results import ItemResult, Summary


class UnmarkedPlugin(BeetsPlugin):
    """Markers per item and operation, and the commands that use them."""

    item_types = markers.ITEM_TYPES
    item_queries = {"unmarked": markers.UnmarkedQuery}  # noqa: RUF012 - beets reads this class attribute as is

    def __init__(self) -> None:
        super().__init__()
        self.config.add(CONFIG_DEFAULTS)
        self.register_listener("pluginload", self._check_config)
        if self.config["auto"].get() is True:  # anything else but `no` is refused by _check_config
            self.register_listener("import_task_files", self.process_imported)
        self.register_listener("pluginload", self._extend_web)

    def _check_config(self) -> None:
        """Refuse a setting the code cannot use before any command or server
        starts: beets prints the ConfigError (a UserError) as one line."""
        from .config import check

        check(self.config)

    def _extend_web(self) -> None:
        """With beets' `web` plugin loaded too, add our API and page to its app."""
        from beets import plugins

        if any(plugin.name == "web" for plugin in plugins.find_plugins()):
            from .web import register

            register(self)

    def commands(self) -> list[Any]:
        from .cli import build_commands

        return build_commands(self)

    def process_imported(self, session: ImportSession, task: ImportTask) -> None:
        """Import hook: each task's items leave the import processed and marked.

        Runs after beets has placed the files, as a job of its own (waiting if
        another job holds the library), with the whole task in one batch: one
        commit for its items' changes and markers. Re-imports are processed
        again even if they inherited markers.
        """
        from .beets_compat import stored_id
        from .engine import Settings
        from .operations import OPERATIONS
        from .runner import JobConfig, open_job

        items = task.imported_items()
        if not items:
            return
        config = JobConfig.from_plugin(self.config)
        # The whole task in one batch: one commit for its items' changes and markers.
        config = replace(config, settings=Settings(batch_size=len(items), batch_seconds=float("inf")))
        ids = [stored_id(item) for item in items]
        with open_job(session.lib, OPERATIONS["process"], f"import of {len(items)} items", force=True,
                      origin="import", config=config, log=self._log, ids=ids, wait=self._waiting) as job:
            job.run([ImportLog(self)])


    def _waiting(self, active: dict[str, Any] | None) -> None:
        from .jobs import describe

        self._log.info("waiting for {} to finish", describe(active) if active else "another process")


class ImportLog:
    """The import hook's sink: failures as warnings, one line per task."""

    def __init__(self, plugin: UnmarkedPlugin) -> None:
        self.log = plugin._log

    def start(self, total: int) -> None:
        pass

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None:
        for _, result in numbered:
            if not result.success:
                self.log.warning("{} (left unmarked)", result.error)

    def done(self, summary: Summary) -> None:
        self.log.info("processed {} imported items: {} succeeded, {} failed",
                      summary.current, summary.succeeded, summary.failed)
