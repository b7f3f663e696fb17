"""The relabel menu under a gallery image (Mistakes and Audit pages): move, quarantine or keep, journaled."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgclf_app.dataset_state import load_dataset_index
from imgclf_core.relabel import QUARANTINE, RelabelError, RelabelJournal

KEEP = "correct as is"
MESSAGE_KEY = "relabel_message"
ERROR_KEY = "relabel_error"


def relabel_menu_ui(folder: Path, path: str, class_names: list[str], widget_key: str) -> None:
    """A select under an image: picking an action applies it at once (undo is on the page)."""
    current_class = path.split("/")[0]
    actions = [*[f"move to {name}" for name in class_names if name != current_class], f"move to {QUARANTINE}", KEEP]
    st.selectbox("Relabel", actions, index=None, placeholder="Relabel…", key=widget_key, label_visibility="collapsed",
                 on_change=_apply_action, args=(str(folder), path, widget_key))


def _apply_action(dataset_root: str, path: str, widget_key: str) -> None:
    action = st.session_state[widget_key]
    if action is None:
        return
    try:
        journal = RelabelJournal(dataset_root)
        if action == KEEP:
            journal.keep(path)
            st.session_state[MESSAGE_KEY] = f"Kept {path} as labelled."
        else:
            move = journal.move(path, action.removeprefix("move to "))
            st.session_state[MESSAGE_KEY] = f"Moved {move.source} → {move.target} (undo below)."
    except RelabelError as error:
        st.session_state[ERROR_KEY] = str(error)
    load_dataset_index.clear()


def relabel_messages_ui() -> None:
    """The outcome of the last menu action (set by its callback, shown once)."""
    if MESSAGE_KEY in st.session_state:
        st.success(st.session_state.pop(MESSAGE_KEY))
    if ERROR_KEY in st.session_state:
        st.error(st.session_state.pop(ERROR_KEY))


def undo_redo_ui(journal: RelabelJournal, key: str) -> None:
    """Undo / Redo of the journal's last N moves (N picked beside the buttons); keys U and Y."""
    moves = journal.relabel_moves()
    columns = st.columns([1, 1, 1])
    count = int(columns[0].number_input("Moves", 1, max(len(moves), 1), 1, key=f"{key}_undo_count",
                                        label_visibility="collapsed", help="How many moves Undo and Redo walk"))
    if columns[1].button("Undo last move" if count == 1 else f"Undo last {count} moves", key=f"{key}_undo",
                         disabled=not journal.can_undo(), shortcut="U"):
        _journal_step(journal.undo, count, "Undid")
    if columns[2].button("Redo", key=f"{key}_redo", disabled=not journal.can_redo(), shortcut="Y"):
        _journal_step(journal.redo, count, "Redid")


def _journal_step(step, count: int, verb: str) -> None:
    try:
        made = step(count)
    except RelabelError as error:
        st.session_state[ERROR_KEY] = str(error)
    else:
        st.session_state[MESSAGE_KEY] = f"{verb} " + ", ".join(f"{move.source} → {move.target}" for move in made) + "."
    load_dataset_index.clear()
    st.rerun()
