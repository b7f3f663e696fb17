"""Train: configure and start a run (its own process), watch it live, stop/resume, compare and delete runs."""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from imgclf_app.charts import curves_chart, curves_frame
from imgclf_app.dataset_loaders import scan_or_report
from imgclf_app.export_view import export_ui
from imgclf_app.forms import current_augmentation, describe_augmentation
from imgclf_app.session_keys import (
    MODEL_KEYED_PREFIXES, PANEL_STATE, TRAIN_BATCH, TRAIN_DELETE_CHOICE, TRAIN_EPOCHS, TRAIN_FINE_TUNE,
    TRAIN_FORM_FOLDER, TRAIN_LEARNING_RATE, TRAIN_MODEL, TRAIN_RUN_CHOICE, TRAIN_SIZE, TRAIN_VALIDATION, select_run,
    selected_run,
)
from imgclf_app.sidebar import sidebar_ui
from imgclf_app.views import accuracy_text, refused_while_busy, split_evaluations_ui
from imgclf_core.config import DataConfig, RunConfig
from imgclf_core.data.dataset import TEST, VALIDATION, DatasetError, DatasetIndex
from imgclf_core.models.registry import MODEL_REGISTRY
from imgclf_core.training import run_catalog, run_process
from imgclf_core.training.recommend import Recommendation, recommend_settings
from imgclf_core.training.run_folder import (
    ACTIVE_STATES, FAILED, INTERRUPTED, STOPPED, RunError, RunFolder,
)
from imgclf_core.training.run_setup import RunChoices, build_run_config, check_can_train, model_defaults

REFRESH_SECONDS = 2
RESUMABLE_STATES = (STOPPED, INTERRUPTED, FAILED)


def model_choice_ui(recommended: Recommendation) -> str:
    """The model picker, on the recommended model until the user picks another. The options name no
    image size: the size box beside it says the one size this run will use (from the data)."""
    names = list(MODEL_REGISTRY)

    def describe(name: str) -> str:
        kind = "pretrained" if MODEL_REGISTRY[name].pretrained else "from scratch"
        return f"{name} ({kind}, recommended)" if name == recommended.model else f"{name} ({kind})"

    model_name = st.selectbox("Model", names, index=names.index(recommended.model), key=TRAIN_MODEL,
                              format_func=describe)
    st.info(f"Recommended for this data: {recommended.reason}", icon=":material/lightbulb:")
    st.caption(MODEL_REGISTRY[model_name].description)
    return model_name


def forget_other_dataset_choices(folder: Path) -> None:
    """Another dataset gets its own recommendation: drop the model and its settings picked for the last one."""
    if st.session_state.get(TRAIN_FORM_FOLDER) == str(folder):
        return
    st.session_state[TRAIN_FORM_FOLDER] = str(folder)
    for key in [key for key in st.session_state if key == TRAIN_MODEL or key.startswith(MODEL_KEYED_PREFIXES)]:
        del st.session_state[key]


def run_config_form(index: DatasetIndex, folder: Path) -> RunConfig:
    """The training widgets -> RunConfig (built by the same function as the CLI's)."""
    forget_other_dataset_choices(folder)
    recommended = recommend_settings(index)
    model_name = model_choice_ui(recommended)
    spec = MODEL_REGISTRY[model_name]
    defaults = model_defaults(model_name, index, recommended)
    data = DataConfig()
    color_mode = defaults.color_mode
    columns = st.columns(4)
    # Keyed by model: switching model brings back that model's own defaults; edits stick while it stays.
    image_size = columns[0].number_input("Image size (px)", 8, 1024, defaults.image_size,
                                         key=f"{TRAIN_SIZE}{model_name}")
    epochs = columns[1].number_input("Epochs", 1, 1000, defaults.training.epochs, key=f"{TRAIN_EPOCHS}{model_name}",
                                     help="Pretrained models: epochs of the head, on cached features (seconds each).")
    batch_size = columns[2].number_input("Batch size", 1, 4096, defaults.batch_size, key=f"{TRAIN_BATCH}{model_name}")
    learning_rate = columns[3].number_input(
        "Learning rate", 1e-6, 1.0, defaults.training.learning_rate, format="%.0e", step=1e-4,
        key=f"{TRAIN_LEARNING_RATE}{model_name}",
    )
    columns = st.columns(4)
    fine_tune_epochs = columns[0].number_input(
        "Fine-tune epochs", 0, 1000, defaults.training.fine_tune_epochs, key=f"{TRAIN_FINE_TUNE}{model_name}",
        disabled=not spec.pretrained,
        help="Pretrained models: after the head, train the top of the base at a lower rate.",
    )
    validation_split = validation_split_ui(columns[1], index, defaults.validation_split, model_name)
    seed = columns[2].number_input("Seed", 0, 2**31 - 1, data.seed, key="train_seed")
    columns[3].markdown(f"Colour: **{color_mode}**  \n(from the images)")
    augmentation = current_augmentation()
    st.caption(f"Augmentation: {describe_augmentation(augmentation)} (change it on the Dataset page)")
    choices = RunChoices(
        model=model_name, image_size=image_size, color_mode=color_mode, epochs=epochs,
        fine_tune_epochs=fine_tune_epochs if spec.pretrained else None, learning_rate=learning_rate,
        batch_size=batch_size, validation_split=validation_split, seed=seed, augmentation=augmentation,
    )
    return build_run_config(folder, index, choices, recommended)


def validation_split_ui(container, index: DatasetIndex, default: float, model_name: str) -> float:
    """The share held out for validation, unless the dataset has its own validation folder (then that is used)."""
    if index.split_counts.get(VALIDATION):
        container.markdown("Validation: **the dataset's validation folder**")
        return default  # unused: the trainer keeps the given split
    return container.slider("Validation split", 0.05, 0.5, default, 0.05, key=f"{TRAIN_VALIDATION}{model_name}",
                            help="Made by content hash, so identical files never land on both sides.")


def start_ui(index: DatasetIndex, folder: Path, runs_root: Path, has_runs: bool) -> None:
    with st.expander("New run", expanded=not has_runs):
        config = run_config_form(index, folder)
        if not st.button("Start training", type="primary", key="train_start") or refused_while_busy(runs_root):
            return
        if len(index.class_names) < 2:
            st.error("Training needs at least two classes with images.")
            return
        try:  # a class only the validation or test folder has: say so now, not after the trainer starts
            check_can_train(index, config.data.validation_split, config.data.seed)
        except DatasetError as error:
            st.error(str(error))
            return
        handle = run_process.start_run(config, run_catalog.new_run_dir(runs_root, config.model.name))
        select_run(handle.run_dir)
        st.rerun()


def choose_run(run_dirs: list[Path]) -> Path | None:
    """The run shown below: the sidebar's current run (picked here, or the one training, or the newest)."""
    if not run_dirs:
        return None
    by_name = {run_dir.name: run_dir for run_dir in run_dirs}
    picked = selected_run()
    if picked not in map(str, run_dirs):
        picked = str(run_dirs[0])
        select_run(picked)
    st.session_state[TRAIN_RUN_CHOICE] = Path(picked).name

    def pick() -> None:
        select_run(by_name[st.session_state[TRAIN_RUN_CHOICE]])

    st.selectbox("Run", list(by_name), key=TRAIN_RUN_CHOICE, on_change=pick)
    return Path(picked)


def run_panel(run_dir: Path) -> None:
    """State, progress, ETA, learning rate and live curves of one run, read from its folder."""
    run = RunFolder(run_dir)
    status, history, progress = run.read_status(), run.read_history(), run.read_progress()
    state = status["state"]
    epochs = status.get("epochs") or _planned_epochs(run_dir)
    latest = progress[-1] if progress else {}
    columns = st.columns(4)
    columns[0].metric("State", state)
    columns[1].metric("Epoch", f"{current_epoch(state, history, latest)}/{epochs}" if epochs else "–",
                      help="The epoch being trained (while a run trains), else the epochs done.")
    remaining = run_catalog.remaining_seconds(status, progress)
    columns[2].metric("Time left", _duration(remaining) if remaining is not None else "–")
    columns[3].metric("Learning rate", f"{latest['lr']:.2e}" if latest.get("lr") is not None else "–")
    activity_ui(status, latest, epochs)
    usable_model_ui(status)
    for note in status.get("notes") or []:
        st.info(note)
    if state == FAILED:
        st.error(f"Training failed: {status.get('message', '')} (details in {run.log_path})")
    frame = curves_frame(history, progress)
    if frame.empty:
        st.caption("Curves appear after the first few batches.")
    else:
        left, right = st.columns(2)
        left.altair_chart(curves_chart(frame, "loss"), width="stretch")
        right.altair_chart(curves_chart(frame, "accuracy"), width="stretch")
    controls_ui(run_dir, state)
    seen_states = st.session_state.setdefault(PANEL_STATE, {})
    previous, seen_states[str(run_dir)] = seen_states.get(str(run_dir)), state
    if previous not in (None, state):
        # queued -> running -> finished: redraw the whole page (sidebar state, evaluation, runs list)
        st.rerun(scope="app")


def current_epoch(state: str, history: list[dict], latest: dict) -> int:
    """The epoch the progress bar is in while a run trains (history holds the finished ones), else epochs done."""
    if state in ACTIVE_STATES and latest.get("steps") and latest.get("epoch", 0) > len(history):
        return int(latest["epoch"])
    return len(history)


def activity_ui(status: dict, latest: dict, epochs: int) -> None:
    """What the trainer does right now: a bar over an epoch's batches or over the images whose features it computes."""
    message = status.get("message", "")
    if status["state"] not in ACTIVE_STATES:
        st.caption(message)
    elif status.get("steps") and "features" in message:  # the first minutes of a pretrained run go here
        st.progress(min(status["step"] / status["steps"], 1.0), text=message)
    elif message.startswith("epoch") and latest.get("steps"):
        st.progress(latest["step"] / latest["steps"],
                    text=f"epoch {latest['epoch']}/{epochs}: step {latest['step']}/{latest['steps']}")
    else:  # scanning, decoding, the head on features: steps without batches, said in words
        st.info(message or "starting", icon=":material/hourglass_top:")


def usable_model_ui(status: dict) -> None:
    """While a pretrained run fine-tunes, its head-on-features model is already saved: say it can be used."""
    usable = status.get("usable_model")
    if status["state"] not in ACTIVE_STATES or not usable:
        return
    accuracy, seconds = usable.get("val_accuracy"), usable.get("seconds")
    figure = f" (validation accuracy {accuracy_text(accuracy)})" if _is_number(accuracy) else ""
    after = f" after {_duration(seconds)}" if _is_number(seconds) else ""
    st.success(f"Usable model ready{figure}{after}: the Predict page can use it while fine-tuning goes on",
               icon=":material/check_circle:")


def controls_ui(run_dir: Path, state: str) -> None:
    handle = run_process.RunHandle(run_dir)
    columns = st.columns(6)
    if state in ACTIVE_STATES:
        if columns[0].button("Stop", key="train_stop"):
            handle.stop(timeout_s=0)  # the trainer finishes its batch, saves and marks the run stopped
            st.toast("Stopping after the current batch…")
    elif state in RESUMABLE_STATES:
        if columns[0].button("Resume", key="train_resume") and not refused_while_busy(run_dir.parent):
            handle.resume()
            st.rerun()


def _planned_epochs(run_dir: Path) -> int:
    """Head (or full) plus fine-tune epochs from the run's config: some status lines do not repeat them."""
    try:
        training = RunFolder(run_dir).read_config().training
    except (RunError, ValueError, KeyError, TypeError):
        return 0
    return training.total_epochs


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if not minutes and not hours:
        return f"{secs}s"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def finished_run_ui(run_dir: Path) -> None:
    evaluations = {split: RunFolder(run_dir).read_evaluation(split) for split in (VALIDATION, TEST)}
    evaluations = {split: evaluation for split, evaluation in evaluations.items() if evaluation is not None}
    if not evaluations:
        return
    st.subheader("Evaluation of the best model" if TEST in evaluations
                 else "Evaluation of the best model on the validation images")
    split_evaluations_ui(evaluations)
    st.page_link("app_pages/mistakes.py", label="See the mistakes: confusion cells, top losses, relabel in place",
                 icon=":material/troubleshoot:")
    export_ui(run_dir)


def runs_list_ui(run_dirs: list[Path], training: bool) -> None:
    st.subheader("Runs of this dataset")
    # While a run trains, the table rereads the run folders with the live panel (state, epochs, accuracy).
    table_ui = st.fragment(run_every=REFRESH_SECONDS)(runs_table_ui) if training else runs_table_ui
    table_ui(run_dirs)
    compare_ui(run_dirs)
    delete_ui(run_dirs)


def runs_table_ui(run_dirs: list[Path]) -> None:
    import pandas as pd  # here, not at the top: the page's title is drawn before pandas loads

    table = pd.DataFrame([run_catalog.summarize_run(run_dir) for run_dir in run_dirs])
    if table["test_accuracy"].isna().all():
        table = table.drop(columns="test_accuracy")  # no test split: no empty column
    # The same figures as everywhere else: run_catalog.run_accuracy, shown as accuracy_text shows them.
    for column in ("val_accuracy", "test_accuracy"):
        if column in table:
            table[column] = [None if value is None or value != value else accuracy_text(value) for value in table[column]]
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "val_accuracy": st.column_config.TextColumn("validation accuracy"),
        "test_accuracy": st.column_config.TextColumn("test accuracy (held out)"),
    })


def compare_ui(run_dirs: list[Path]) -> None:
    import pandas as pd

    names = [run_dir.name for run_dir in run_dirs]
    chosen = st.multiselect("Compare runs", names, key="train_compare", placeholder="Pick two or more runs")
    if len(chosen) < 2:
        return
    frames, f1 = [], {}
    for name in chosen:
        run_dir = run_dirs[names.index(name)]
        frame = curves_frame(RunFolder(run_dir).read_history())
        frames.append(frame[frame["split"] == "validation"].assign(run=name))
        evaluation = RunFolder(run_dir).read_evaluation()
        if evaluation is not None:
            f1[name] = {label: scores["f1"] for label, scores in evaluation["per_class"].items()}
    combined = pd.concat(frames)
    left, right = st.columns(2)
    left.altair_chart(curves_chart(combined, "loss", color="run").properties(title="Validation loss"), width="stretch")
    right.altair_chart(curves_chart(combined, "accuracy", color="run").properties(title="Validation accuracy"),
                       width="stretch")
    if f1:
        st.markdown("**Per-class F1** (best model of each run)")
        st.dataframe(pd.DataFrame(f1), column_config={name: st.column_config.NumberColumn(format="%.3f") for name in f1})
    data_difference_ui([run_dirs[names.index(name)] for name in chosen])


def data_difference_ui(run_dirs: list[Path]) -> None:
    """What changed in the images between each chosen run and the next (by their manifests, by content)."""
    import pandas as pd

    from imgclf_core.training.manifest import manifest_difference

    st.markdown("**What changed in the data** (each run against the one before it in the list, images matched by content)")
    for before, after in zip(run_dirs, run_dirs[1:]):
        rows_before, rows_after = RunFolder(before).read_manifest(), RunFolder(after).read_manifest()
        if rows_before is None or rows_after is None:
            st.caption(f"{before.name} → {after.name}: a run made before manifests has no record of its images.")
            continue
        difference = manifest_difference(rows_before, rows_after)
        st.markdown(f"{before.name} → {after.name}: " + ("the same images and labels." if difference.same
                                                          else difference.summary()))
        if difference.same:
            continue
        tables = {"relabelled": pd.DataFrame([vars(row) for row in difference.relabelled]),
                  "added": pd.DataFrame([vars(row) for row in difference.added]),
                  "removed": pd.DataFrame([vars(row) for row in difference.removed])}
        for kind, table in tables.items():
            if len(table):
                with st.expander(f"{kind.capitalize()} ({len(table):,})"):
                    st.dataframe(table.drop(columns=["sha256"], errors="ignore"), hide_index=True, width="stretch",
                                 key=f"train_diff:{kind}:{before.name}:{after.name}")


def delete_ui(run_dirs: list[Path]) -> None:
    names = [run_dir.name for run_dir in run_dirs]
    columns = st.columns([3, 1])
    name = columns[0].selectbox("Delete a run", names, index=None, key=TRAIN_DELETE_CHOICE,
                                placeholder="Pick a run to delete")
    if name is None:
        return
    if not columns[1].checkbox(f"Yes, delete {name} and its model", key=f"train_delete_confirm:{name}"):
        return
    if st.button(f"Delete {name}", type="primary", key="train_delete"):
        try:
            RunFolder(run_dirs[names.index(name)]).delete()
        except RunError as error:
            st.error(str(error))
            return
        if selected_run() == str(run_dirs[names.index(name)]):
            select_run(None)
        st.session_state.pop(TRAIN_DELETE_CHOICE, None)
        st.rerun()


folder = sidebar_ui()
st.title("Train")
if folder is not None:
    dataset_index = scan_or_report(folder)
    if dataset_index is not None:
        runs_root = run_catalog.default_runs_root()
        dataset_runs = run_catalog.runs_of_dataset(runs_root, folder)
        start_ui(dataset_index, folder, runs_root, has_runs=bool(dataset_runs))
        current = choose_run(dataset_runs)
        if current is None:
            st.info("No run of this dataset yet: pick a model above and start training.")
        else:
            active = RunFolder(current).is_active()
            # While training, only this panel reruns, every REFRESH_SECONDS, reading the run folder.
            panel = st.fragment(run_every=REFRESH_SECONDS)(run_panel) if active else run_panel
            panel(current)
            finished_run_ui(current)
            runs_list_ui(dataset_runs, training=active)
