"""What can happen to one item in a run: its states and the moves between them.

Read top to bottom, this is an item's life in the engine. Every change of an
item's state goes through ``Tracker.to`` (engine.py's ``Touch``), which
refuses a move this table does not name: a new code path that would, say,
commit an item whose file work was never reported fails loudly in tests
instead of lying in a report.

    PLANNED     read from the library just now; the rules' changes (field ->
                [old, new]) and, for a rename, its destination worked out.
                Nothing is journaled and no file is touched.
      -> HANDED   its tag write and move are journaled (with the old values an
                  undo needs) and handed to the worker (workers.py). From here
                  its file may be written and may be moved.
      -> DONE     nothing to do to its file (tags and path already right).
      -> FAILED   it cannot be planned (file missing, no destination, ...).

    HANDED
      -> DONE     the worker reports the write and the move done.
      -> FAILED   the worker reports an error; the file is where the report
                  says (a failed write leaves it as it was).
      -> UNTRIED  the worker stopped before it (cancel, Ctrl-C, claim lost).
      -> UNDONE   the run ended without a report (a helper killed, a task cut
                  by Ctrl-C): the undo found the file and put it back.

    DONE, FAILED  wait for the batch's commit, one transaction for the batch:
      -> COMMITTED  stored: a DONE item with its markers; a FAILED one only if
                    its file changed (what it holds, no marker).
      -> CONFLICTED another program committed a change to it (or its album)
                    since it was read: not stored, put back, maybe done again.
      -> UNDONE     the run ended before the commit: put back on disk.

    UNTRIED, CONFLICTED
      -> UNDONE   put back (for UNTRIED: its journal entries dropped).

COMMITTED and UNDONE are final. Each selected item's *outcome* (what the
sinks report: succeeded, failed, skipped) is separate: the engine's
``_account`` checks at the end of the run that every selected id has
exactly one, whatever states its touches went through (a CONFLICTED item is
read again as a new touch and planned from its new state).
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    PLANNED = "planned"
    HANDED = "handed"
    DONE = "done"
    FAILED = "failed"
    UNTRIED = "untried"
    COMMITTED = "committed"
    CONFLICTED = "conflicted"
    UNDONE = "undone"


PLANNED, HANDED, DONE, FAILED, UNTRIED, COMMITTED, CONFLICTED, UNDONE = State

TRANSITIONS: dict[State, frozenset[State]] = {
    PLANNED: frozenset({HANDED, DONE, FAILED}),
    HANDED: frozenset({DONE, FAILED, UNTRIED, UNDONE}),
    DONE: frozenset({COMMITTED, CONFLICTED, UNDONE}),
    FAILED: frozenset({COMMITTED, CONFLICTED, UNDONE}),
    UNTRIED: frozenset({UNDONE}),
    CONFLICTED: frozenset({UNDONE}),
    COMMITTED: frozenset(),
    UNDONE: frozenset(),
}


class IllegalTransition(AssertionError):
    """A move the table above does not name: a defect in the engine, never an item's trouble."""


class Tracker:
    """An item's state; ``to`` makes a move the table allows, or raises."""

    state: State = PLANNED

    def to(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"item {getattr(self, 'id', '?')}: {self.state.value} -> {new.value}")
        self.state = new
