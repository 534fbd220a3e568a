"""The three operations as data: which steps each runs, which markers it sets.

Everything else (the engine, the CLI, the web API, the import hook) looks an
operation up here by name instead of spelling out its steps again.
"""

from __future__ import annotations

from dataclasses import dataclass

NORMALIZED = "normalized"
RENAMED = "renamed"
MARKER_FIELDS: tuple[str, ...] = (NORMALIZED, RENAMED)


@dataclass(frozen=True)
class Operation:
    """One thing the plugin can do to an item, and the markers that record it."""

    name: str
    normalize: bool
    rename: bool

    @property
    def markers(self) -> tuple[str, ...]:
        """Markers set when the operation completes; lacking any = unmarked."""
        fields = []
        if self.normalize:
            fields.append(NORMALIZED)
        if self.rename:
            fields.append(RENAMED)
        return tuple(fields)

    @property
    def command(self) -> str:
        return f"{self.name}-unmarked"


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("process", normalize=True, rename=True),
        Operation("rename", normalize=False, rename=True),
        Operation("normalize", normalize=True, rename=False),
    )
}


def get_operation(name: str) -> Operation:
    """Look an operation up by name; ValueError names the valid ones."""
    try:
        return OPERATIONS[name]
    except KeyError:
        valid = ", ".join(OPERATIONS)
        raise ValueError(f"unknown operation {name!r} (expected one of: {valid})") from None
