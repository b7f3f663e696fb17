"""Train: configure and start a run (its own process), watch it live, stop/resume, compare and delete runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from imgclf_app.charts import curves_chart, curves_frame
from imgclf_app.dataset_state import scan_or_report, sidebar_ui
from imgclf_app.export_view import export_ui
from imgclf_app.forms import current_augmentation, describe_augmentation
from imgclf_app.views import evaluation_ui, refused_while_busy
from imgclf_core import runs
from imgclf_core.config import DataConfig, ModelConfig, RunConfig, TrainingConfig
from imgclf_core.dataset import DatasetIndex
from imgclf_core.models import MODEL_REGISTRY, suggested_input

REFRESH_SECONDS = 2
RESUMABLE_STATES = (runs.STOPPED, runs.INTERRUPTED, runs.FAILED)


def run_config_form(index: DatasetIndex, folder: Path) -> RunConfig:
    """The training widgets -> RunConfig (the same dataclasses the CLI builds)."""
    names = list(MODEL_REGISTRY)
    model_name = st.selectbox(
        "Model", names, key="train_model",
        format_func=lambda name: f"{name} ({MODEL_REGISTRY[name].default_image_size} px)",
    )
    spec = MODEL_REGISTRY[model_name]
    st.caption(spec.description)
    image_size, color_mode = suggested_input(model_name, index)
    training, data = TrainingConfig(), DataConfig()
    columns = st.columns(4)
    # Keyed by model: switching model brings back that model's own default size.
    image_size = columns[0].number_input("Image size (px)", 8, 1024, image_size, key=f"train_size:{model_name}")
    epochs = columns[1].number_input("Epochs", 1, 1000, training.epochs, key="train_epochs")
    batch_size = columns[2].number_input("Batch size", 1, 4096, data.batch_size, key="train_batch")
    learning_rate = columns[3].number_input(
        "Learning rate", 1e-6, 1.0, training.learning_rate, format="%.0e", step=1e-4, key="train_lr"
    )
    columns = st.columns(4)
    fine_tune_epochs = columns[0].number_input(
        "Fine-tune epochs", 0, 1000, 0, key="train_fine_tune", disabled=not spec.pretrained,
        help="Pretrained models: after the head, train the top of the base at a lower rate.",
    )
    validation_split = columns[1].slider("Validation split", 0.05, 0.5, data.validation_split, 0.05, key="train_val")
    seed = columns[2].number_input("Seed", 0, 2**31 - 1, data.seed, key="train_seed")
    columns[3].markdown(f"Colour: **{color_mode}**  \n(from the images)")
    augmentation = current_augmentation()
    st.caption(f"Augmentation: {describe_augmentation(augmentation)} (change it on the Dataset page)")
    return RunConfig(
        data_dir=str(folder.resolve()),
        data=DataConfig(image_size=int(image_size), color_mode=color_mode, validation_split=float(validation_split),
                        seed=int(seed), batch_size=int(batch_size)),
        augmentation=augmentation,
        model=ModelConfig(name=model_name, weights="imagenet" if spec.pretrained else "none"),
        training=TrainingConfig(epochs=int(epochs), learning_rate=float(learning_rate),
                                fine_tune_epochs=int(fine_tune_epochs) if spec.pretrained else 0),
    )


def start_ui(index: DatasetIndex, folder: Path, runs_root: Path, has_runs: bool) -> None:
    with st.expander("New run", expanded=not has_runs):
        config = run_config_form(index, folder)
        if not st.button("Start training", type="primary", key="train_start") or refused_while_busy(runs_root):
            return
        if len(index.class_names) < 2:
            st.error("Training needs at least two classes with images.")
            return
        handle = runs.start_run(config, runs.new_run_dir(runs_root, config.model.name))
        st.session_state["run_dir"] = str(handle.run_dir)
        st.rerun()


def choose_run(run_dirs: list[Path]) -> Path | None:
    """The run shown below: the sidebar's current run (picked here, or the one training, or the newest)."""
    if not run_dirs:
        return None
    by_name = {run_dir.name: run_dir for run_dir in run_dirs}
    picked = st.session_state.get("run_dir")
    if picked not in map(str, run_dirs):
        picked = str(run_dirs[0])
        st.session_state["run_dir"] = picked
    st.session_state["train_run_choice"] = Path(picked).name

    def pick() -> None:
        st.session_state["run_dir"] = str(by_name[st.session_state["train_run_choice"]])

    st.selectbox("Run", list(by_name), key="train_run_choice", on_change=pick)
    return Path(picked)


def run_panel(run_dir: Path) -> None:
    """State, progress, ETA, learning rate and live curves of one run, read from its folder."""
    status = runs.read_status(run_dir)
    history, progress = runs.read_history(run_dir), runs.read_progress(run_dir)
    state = status["state"]
    epochs = status.get("epochs") or 0
    latest = progress[-1] if progress else {}
    columns = st.columns(4)
    columns[0].metric("State", state)
    columns[1].metric("Epoch", f"{len(history)}/{epochs}" if epochs else "–")
    remaining = runs.remaining_seconds(status, progress)
    columns[2].metric("Time left", _duration(remaining) if remaining is not None else "–")
    columns[3].metric("Learning rate", f"{latest['lr']:.2e}" if latest.get("lr") is not None else "–")
    if state in runs.ACTIVE_STATES and latest.get("steps"):
        st.progress(latest["step"] / latest["steps"],
                    text=f"epoch {latest['epoch']}/{epochs}: step {latest['step']}/{latest['steps']}")
    st.caption(status.get("message", ""))
    for note in status.get("notes") or []:
        st.info(note)
    if state == runs.FAILED:
        st.error(f"Training failed: {status.get('message', '')} (details in {run_dir / 'train.log'})")
    frame = curves_frame(history, progress)
    if frame.empty:
        st.caption("Curves appear after the first few batches.")
    else:
        left, right = st.columns(2)
        left.altair_chart(curves_chart(frame, "loss"), width="stretch")
        right.altair_chart(curves_chart(frame, "accuracy"), width="stretch")
    controls_ui(run_dir, state)
    seen_states = st.session_state.setdefault("panel_state", {})
    previous, seen_states[str(run_dir)] = seen_states.get(str(run_dir)), state
    if previous not in (None, state) and state not in runs.ACTIVE_STATES:
        st.rerun()  # the run just ended: redraw the whole page (evaluation, runs list)


def controls_ui(run_dir: Path, state: str) -> None:
    handle = runs.RunHandle(run_dir)
    columns = st.columns(6)
    if state in runs.ACTIVE_STATES:
        if columns[0].button("Stop", key="train_stop"):
            handle.stop(timeout_s=0)  # the trainer finishes its batch, saves and marks the run stopped
            st.toast("Stopping after the current batch…")
    elif state in RESUMABLE_STATES:
        if columns[0].button("Resume", key="train_resume") and not refused_while_busy(run_dir.parent):
            handle.resume()
            st.rerun()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def finished_run_ui(run_dir: Path) -> None:
    evaluation = runs.read_evaluation(run_dir)
    if evaluation is None:
        return
    st.subheader("Evaluation of the best model on the validation images")
    evaluation_ui(evaluation)
    st.page_link("app_pages/mistakes.py", label="See the mistakes: confusion cells, top losses, relabel in place",
                 icon=":material/troubleshoot:")
    export_ui(run_dir)


def runs_list_ui(run_dirs: list[Path]) -> None:
    st.subheader("Runs of this dataset")
    table = pd.DataFrame([runs.summarize_run(run_dir) for run_dir in run_dirs])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "best_val_accuracy": st.column_config.NumberColumn("best val accuracy", format="%.4f"),
    })
    compare_ui(run_dirs)
    delete_ui(run_dirs)


def compare_ui(run_dirs: list[Path]) -> None:
    names = [run_dir.name for run_dir in run_dirs]
    chosen = st.multiselect("Compare runs", names, key="train_compare", placeholder="Pick two or more runs")
    if len(chosen) < 2:
        return
    frames, f1 = [], {}
    for name in chosen:
        run_dir = run_dirs[names.index(name)]
        frame = curves_frame(runs.read_history(run_dir))
        frames.append(frame[frame["split"] == "validation"].assign(run=name))
        evaluation = runs.read_evaluation(run_dir)
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


def delete_ui(run_dirs: list[Path]) -> None:
    names = [run_dir.name for run_dir in run_dirs]
    columns = st.columns([3, 1])
    name = columns[0].selectbox("Delete a run", names, index=None, key="train_delete_choice",
                                placeholder="Pick a run to delete")
    if name is None:
        return
    if not columns[1].checkbox(f"Yes, delete {name} and its model", key=f"train_delete_confirm:{name}"):
        return
    if st.button(f"Delete {name}", type="primary", key="train_delete"):
        try:
            runs.delete_run(run_dirs[names.index(name)])
        except runs.RunError as error:
            st.error(str(error))
            return
        if st.session_state.get("run_dir") == str(run_dirs[names.index(name)]):
            st.session_state.pop("run_dir")
        st.session_state.pop("train_delete_choice", None)
        st.rerun()


folder = sidebar_ui()
st.title("Train")
if folder is not None:
    dataset_index = scan_or_report(folder)
    if dataset_index is not None:
        runs_root = runs.default_runs_root()
        dataset_runs = runs.runs_of_dataset(runs_root, folder)
        start_ui(dataset_index, folder, runs_root, has_runs=bool(dataset_runs))
        current = choose_run(dataset_runs)
        if current is None:
            st.info("No run of this dataset yet: pick a model above and start training.")
        else:
            active = runs.read_status(current)["state"] in runs.ACTIVE_STATES
            # While training, only this panel reruns, every REFRESH_SECONDS, reading the run folder.
            panel = st.fragment(run_every=REFRESH_SECONDS)(run_panel) if active else run_panel
            panel(current)
            finished_run_ui(current)
            runs_list_ui(dataset_runs)
