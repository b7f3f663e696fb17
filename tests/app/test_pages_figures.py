"""A run's figures read the same wherever they are shown: one accuracy, one rounding, the epoch the bar is in,
and no image size in the model picker beside the size box (AppTest, real run folders)."""

from __future__ import annotations

import json

from helpers.files import shapes_tree
from helpers.pages import open_page
from helpers.runs import evaluation, fake_run

from imgclf_core.training import run_catalog, run_folder
from imgclf_core.training.run_folder import RunFolder


def finished_run_with_an_evaluation(tmp_path):
    """A finished run whose best epoch says 87.25% while its saved model evaluates at 87.00% (and 81.0% on test)."""
    data = shapes_tree(tmp_path / "data", per_class=12)
    run_dir = fake_run(run_catalog.default_runs_root(), "20260101-000000-small_cnn", data, epochs=3)
    history = RunFolder(run_dir).read_history()
    history[-1]["val_accuracy"] = 0.8725
    RunFolder(run_dir).write_history(history)
    matrix = [[9, 1, 0], [1, 8, 1], [0, 1, 9]]
    (run_dir / "evaluation.json").write_text(json.dumps({
        "validation": evaluation(0.87, matrix, ("circle", "square", "triangle")),
        "test": evaluation(0.81, matrix, ("circle", "square", "triangle")),
    }))
    (run_dir / "model.keras").write_bytes(b"not loaded by these checks")
    return data, run_dir


def texts(app) -> str:
    return " ".join([*(element.value for element in app.markdown), *(element.value for element in app.caption),
                     *(str(metric.value) for metric in app.metric)])


def test_one_run_shows_one_accuracy_with_one_rounding_on_every_page(tmp_path):
    data, run_dir = finished_run_with_an_evaluation(tmp_path)
    train = open_page("app_pages/train.py", data)
    assert {metric.label: metric.value for metric in train.metric}["Validation accuracy"] == "87.0%"
    table = train.dataframe[-1].value
    assert list(table["val_accuracy"]) == ["87.0%"] and list(table["test_accuracy"]) == ["81.0%"]
    assert "87.25" not in texts(train) and "87.2%" not in texts(train) and "87.00" not in texts(train)

    predict = open_page("app_pages/predict.py", data)
    label = next(option for option in predict.selectbox(key="predict_model").options if run_dir.name in option)
    assert "validation accuracy 87.0%" in label and "test accuracy 81.0%" in label, label

    home = open_page("app_pages/home.py", data)
    link = next(element.proto.label for element in home.get("page_link") if run_dir.name in element.proto.label)
    assert "validation accuracy 87.0%" in link and "test accuracy 81.0%" in link, link


def test_the_model_picker_names_no_size_that_the_size_box_could_contradict(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=120, size=28)
    app = open_page("app_pages/train.py", data)
    model = app.selectbox(key="train_model")
    assert model.value == "small_cnn" and app.number_input(key="train_size:small_cnn").value == 28
    assert not any("px" in option for option in model.options)  # not "small_cnn (32 px)" beside a 28


def test_the_epoch_figure_is_the_epoch_the_progress_bar_is_in(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=12)
    run_dir = fake_run(run_catalog.default_runs_root(), "20260101-000000-small_cnn", data, state=run_folder.RUNNING,
                       epochs=6)
    RunFolder(run_dir).write_status(run_folder.RUNNING, message="epoch 4/6", epochs=6)  # this process: alive, "python"
    history = RunFolder(run_dir).read_history()[:3]
    RunFolder(run_dir).write_history(history)
    RunFolder(run_dir).append_progress({"epoch": 4, "step": 40, "steps": 50, "loss": 0.5, "accuracy": 0.8, "lr": 1e-3})
    app = open_page("app_pages/train.py", data)
    assert {metric.label: metric.value for metric in app.metric}["Epoch"] == "4/6"
    bar = app.get("progress")[0].proto.text
    assert bar.startswith("epoch 4/6"), bar


def test_curves_count_whole_epochs_and_top_k_labels_are_readable():
    from imgclf_app.charts import curves_chart, curves_frame, top_k_chart

    one_epoch = curves_frame([{"epoch": 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7}])
    x_axis = curves_chart(one_epoch, "accuracy").to_dict()["encoding"]["x"]
    assert x_axis["axis"]["format"] == "d" and x_axis["axis"]["tickMinStep"] == 1  # "1", not "1.000000"
    chart = top_k_chart([("ankle_boot", 0.91), ("sneaker", 0.05), ("sandal", 0.04)]).to_dict()
    bars, figures = chart["layer"]
    assert bars["encoding"]["y"]["axis"]["labelFontSize"] >= 13
    assert list(chart["datasets"].values())[0][0]["text"] == "91.0%"  # each bar says its figure
