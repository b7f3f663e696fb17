"""Relabel from a gallery (Mistakes and Audit pages) and Undo / Redo of one page's own moves (those and Label).

Each page passes its `origin` ("mistakes", "audit", "label"): its moves are journaled with it, and its
Undo and Redo walk only those. The outcome of an action is shown once, at the `place` it was made
(the gallery item whose menu was used), with Undo / Redo right under it, so that both are in view
after the click.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgclf_app.dataset_loaders import load_dataset_index
from imgclf_app.session_keys import RELABEL_ERROR, RELABEL_MESSAGE, RELABEL_PLACE, undo_count_key
from imgclf_core.inspection.relabel import QUARANTINE, Move, RelabelError, RelabelJournal, describe_move

KEEP = "correct as is"


def set_outcome_message(text: str, place: str | None = None, error: bool = False) -> None:
    """Remember the outcome of an action (in a callback) for the next run to show once, at `place`."""
    st.session_state[RELABEL_ERROR if error else RELABEL_MESSAGE] = text
    st.session_state[RELABEL_PLACE] = place


def relabel_menu_ui(folder: Path, path: str, class_names: list[str], widget_key: str,
                    origin: str | None = None) -> None:
    """A select under an image: picking an action applies it at once.

    The move is journaled as made at `origin` (by default the widget key's prefix: "audit:cat/1.png"
    -> "audit"). Its message is kept for the place `widget_key`: a page that calls
    `relabel_messages_ui(journal, origin, place=widget_key)` under the menu shows it (and Undo) there.
    """
    current_class = path.split("/")[0]
    actions = [*[f"move to {name}" for name in class_names if name != current_class], f"move to {QUARANTINE}", KEEP]
    st.selectbox("Relabel", actions, index=None, placeholder="Relabel…", key=widget_key, label_visibility="collapsed",
                 on_change=_apply_action,
                 args=(str(folder), path, widget_key, origin or widget_key.split(":", 1)[0], widget_key))


def gallery_relabel_ui(folder: Path, journal: RelabelJournal, original_path: str, path: str, class_names: list[str],
                       kept: set[str], widget_key: str, origin: str) -> bool:
    """Under a gallery image: where it moved, that it was marked correct, or its relabel menu; then the outcome
    of that menu with Undo / Redo, in view under the image it was about. Returns whether an outcome is shown."""
    if path != original_path:
        st.caption(f"moved to **{path}**")
    elif path in kept:
        st.caption("marked correct as is")
    else:
        relabel_menu_ui(folder, path, class_names, widget_key, origin=origin)
    return relabel_messages_ui(journal, origin, place=widget_key)


def _apply_action(dataset_root: str, path: str, widget_key: str, origin: str, place: str) -> None:
    action = st.session_state[widget_key]
    if action is None:
        return
    try:
        journal = RelabelJournal(dataset_root)
        if action == KEEP:
            journal.keep(path)
            set_outcome_message(f"Kept {path} as labelled.", place)
        else:
            move = journal.move(path, action.removeprefix("move to "), origin=origin)
            set_outcome_message(describe_move(move, "Moved") + ".", place)
    except RelabelError as error:
        set_outcome_message(str(error), place, error=True)
    load_dataset_index.clear()


def relabel_messages_ui(journal: RelabelJournal | None = None, origin: str | None = None,
                        place: str | None = None) -> bool:
    """The outcome of the last action, shown once: only one made at `place` (None: any, wherever it was made).

    With a journal, the page's (`origin`'s) Undo / Redo come right under the message, so that both are
    in view after the click (then pass `shown_above=True` to the page's other `undo_redo_ui`).
    Returns whether a message was shown.
    """
    if RELABEL_MESSAGE not in st.session_state and RELABEL_ERROR not in st.session_state:
        return False
    if place is not None and st.session_state.get(RELABEL_PLACE) != place:
        return False
    st.session_state.pop(RELABEL_PLACE, None)
    if RELABEL_MESSAGE in st.session_state:
        st.success(st.session_state.pop(RELABEL_MESSAGE))
    if RELABEL_ERROR in st.session_state:
        st.error(st.session_state.pop(RELABEL_ERROR))
    if journal is not None and origin is not None:
        undo_redo_ui(journal, origin, place, stacked=True)
    return True


def undo_redo_ui(journal: RelabelJournal, origin: str, place: str | None = None, shown_above: bool = False,
                 stacked: bool = False) -> None:
    """Undo / Redo of the moves made at `origin` (this page) only, each button saying what it will do; keys U and Y.

    With more than one move to walk, a labelled number box sets how many one click walks (listed in
    the buttons' help). `place`: where their outcome is shown (see `relabel_messages_ui`). Side by
    side, or `stacked` one under the other (under a message in a narrow gallery column).
    `shown_above`: the buttons are already on the page, under the last message: say so instead.
    """
    if shown_above:
        st.caption("Undo and Redo are above, under the last message.")
        return
    undoable, redoable = journal.undoable(origin), journal.redoable(origin)
    most = max(len(undoable), len(redoable))
    count_key = undo_count_key(origin)
    count = 1
    row = st.container() if stacked else st.container(horizontal=True, vertical_alignment="bottom")
    if most > 1:
        if st.session_state.get(count_key, 1) > most:
            st.session_state[count_key] = most  # fewer moves left than last picked
        count = int(row.number_input("Moves per click", 1, most, 1, key=count_key, width=140,
                                     help="How many of this page's moves one click of Undo or Redo walks"))
    undo_label, undo_help = _button_text("Undo", undoable[:count])
    row.button(undo_label, key=f"{origin}_undo", help=undo_help, disabled=not undoable, shortcut="U",
               on_click=_journal_step, args=(str(journal.root), "undo", count, origin, place))
    redo_label, redo_help = _button_text("Redo", redoable[:count])
    row.button(redo_label, key=f"{origin}_redo", help=redo_help, disabled=not redoable, shortcut="Y",
               on_click=_journal_step, args=(str(journal.root), "redo", count, origin, place))


def _button_text(verb: str, moves: list[Move]) -> tuple[str, str]:
    """("Undo: move x from A to B", help) for one move; ("Undo 3 moves", the list) for several."""
    if not moves:
        return verb, f"Nothing to {verb.lower()} from this page."
    if len(moves) == 1:
        return f"{verb}: {describe_move(moves[0])}", f"{verb} this page's last move (key {verb[0]})."
    listed = "\n".join(f"- {describe_move(move)}" for move in moves)
    return f"{verb} {len(moves)} moves", f"{verb}, newest first:\n{listed}"


def _journal_step(dataset_root: str, direction: str, count: int, origin: str, place: str | None) -> None:
    try:
        journal = RelabelJournal(dataset_root)
        made = journal.undo(count, origin) if direction == "undo" else journal.redo(count, origin)
    except RelabelError as error:
        set_outcome_message(str(error), place, error=True)
    else:
        verb = "Undid" if direction == "undo" else "Redid"
        originals = [_original(journal, move) for move in made]
        if len(originals) == 1:
            set_outcome_message(f"{verb} {describe_move(originals[0])}.", place)
        else:
            set_outcome_message(f"{verb} {len(originals)} moves: " + "; ".join(map(describe_move, originals)) + ".",
                                place)
    load_dataset_index.clear()


def _original(journal: RelabelJournal, step: Move) -> Move:
    """The move an undo or redo step acted on (the undo of "cat -> dog" reads as undoing that)."""
    return next((move for move, _ in journal.relabel_moves() if move.id == step.of), step)
