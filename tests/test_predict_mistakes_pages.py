"""The Predict and Mistakes pages under AppTest, on a tiny model really trained on real image files."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SHAPES, copy_run_with_its_data, png_bytes, shapes_tree, train_tiny_shapes_run
from test_pages import metrics, open_page

from imgclf_core import runs
from imgclf_core.relabel import RelabelJournal

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, dataset) of a small_cnn trained for 2 epochs on 16 px shapes: trained once per module."""
    return train_tiny_shapes_run(tmp_path_factory.mktemp("template"), epochs=2)


@pytest.fixture
def trained(trained_template, tmp_path) -> tuple[Path, Path]:
    """A private copy of the trained run (in this test's runs folder) and of its dataset."""
    template_run, template_data = trained_template
    return copy_run_with_its_data(template_run, template_data, runs.default_runs_root() / template_run.name,
                                  tmp_path / "data")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file() and ".imgclf" not in path.parts}


# ---------------------------------------------------------------- predict page


def test_predict_page_classifies_uploads_and_reports_a_corrupt_one(trained):
    run_dir, data = trained
    app = open_page("app_pages/predict.py", data)
    assert app.selectbox(key="predict_model").value == str(run_dir)  # the sidebar's run, not ImageNet
    good = (data / "ring").glob("*.png").__next__().read_bytes()
    app.file_uploader(key="predict_files").set_value([
        ("ring.png", good, "image/png"),
        ("broken.png", b"this is not an image", "image/png"),
        ("photo.png", png_bytes(3, (40, 30)), "image/png"),
        ("bomb.png", bomb_png(), "image/png"),
    ]).run()
    assert not app.exception, app.exception
    table = next(frame.value for frame in app.dataframe if "predicted" in frame.value.columns)
    assert list(table["image"]) == ["ring.png", "broken.png", "photo.png", "bomb.png"]
    assert set(table["predicted"].dropna()) <= set(SHAPES) and table["predicted"].notna().sum() == 2
    assert "broken.png" in table[table["predicted"].isna()]["image"].tolist()
    assert any("broken.png" in error.value for error in app.error)
    assert any("bomb.png" in error.value and "pixels" in error.value for error in app.error)
    overlays = [image for image in app.get("image") if image.captions and "where the model looked" in image.captions[0]]
    assert len(overlays) == 2
    assert len(app.get("vega_lite_chart")) == 2  # a top-k chart per good image
    assert [button.label for button in app.get("download_button")] == ["Download as CSV"]

    other = next(label for label in app.selectbox(key="predict_class:" + _file_id(app, 0)).options
                 if label != app.selectbox(key="predict_class:" + _file_id(app, 0)).value)
    app.selectbox(key="predict_class:" + _file_id(app, 0)).set_value(other).run()
    overlays = [image.captions[0] for image in app.get("image") if image.captions and "where the model" in image.captions[0]]
    assert overlays[0] == f"where the model looked for '{other}'"


def test_predict_page_classifies_with_an_uploaded_model_and_refuses_unsafe_or_broken_ones(trained, tmp_path):
    import keras

    from imgclf_core.predict import Predictor

    run_dir, data = trained
    app = open_page("app_pages/predict.py", data)
    app.selectbox(key="predict_model").set_value("uploaded model").run()
    assert any("A model file is a program" in warning.value for warning in app.warning)

    # Garbage, then a model with a Lambda layer: one clear line each, no traceback.
    app.file_uploader(key="predict_model_file").set_value(("junk.keras", b"PK\x03\x04 not a zip", "application/zip")).run()
    assert not app.exception and any("junk.keras: corrupt model file" in error.value for error in app.error)
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Lambda(lambda tensor: tensor * 2, name="sneaky")(inputs)))
    keras.saving.save_model(keras.Model(inputs, outputs), tmp_path / "lambda.keras")
    app.file_uploader(key="predict_model_file").set_value(
        ("lambda.keras", (tmp_path / "lambda.keras").read_bytes(), "application/zip")).run()
    assert not app.exception and any("Lambda layers run arbitrary code" in error.value for error in app.error)

    # The run's own model with its class names: the same answer as the run gives.
    run_predictor = Predictor.from_run(run_dir)
    app.file_uploader(key="predict_model_file").set_value(
        ("model.keras", (run_dir / "model.keras").read_bytes(), "application/zip"))
    app.file_uploader(key="predict_model_labels").set_value(("labels.txt", "\n".join(run_predictor.class_names).encode(), "text/plain")).run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    image = next((data / "cross").glob("*.png"))
    app.file_uploader(key="predict_files").set_value([("cross.png", image.read_bytes(), "image/png")]).run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    table = next(frame.value for frame in app.dataframe if "predicted" in frame.value.columns)
    expected = run_predictor.top_k(run_predictor.predict_arrays(run_predictor.load_image(image)[None])[0], 1)[0]
    assert table["predicted"].tolist() == [expected[0]]
    assert table["confidence"].tolist()[0] == pytest.approx(expected[1], abs=1e-5)


def bomb_png() -> bytes:
    """A small file that would decode to 81 million pixels (a decompression bomb)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, "PNG")
    return buffer.getvalue()


def _file_id(app, position: int) -> str:
    keys = [box.key for box in app.selectbox if box.key and box.key.startswith("predict_class:")]
    return keys[position].split(":", 1)[1]


# ---------------------------------------------------------------- mistakes page


def test_mistakes_page_shows_the_matrix_and_a_cell_gallery_and_relabel_undo_restores_files(trained):
    run_dir, data = trained
    before = snapshot(data)
    app = open_page("app_pages/mistakes.py", data)
    assert "Validation accuracy" in metrics(app)
    assert any(frame.value.index.tolist() == list(SHAPES) or sorted(frame.value.index) == sorted(SHAPES)
               for frame in app.dataframe)
    app.selectbox(key="mistakes_true").set_value("ring").run()
    app.selectbox(key="mistakes_predicted").set_value("ring").run()
    gallery = [image for image in app.get("image") if image.captions and image.captions[0].startswith("ring → ring")]
    if not gallery:  # the tiny model may have called every ring something else: use the largest ring cell
        predicted = max(SHAPES, key=lambda shape: sum(1 for image in app.get("image")
                                                      if image.captions and image.captions[0].startswith(f"ring → {shape}")))
        app.selectbox(key="mistakes_predicted").set_value(predicted).run()
    menus = [box for box in app.selectbox if box.key and box.key.startswith("cell:")]
    assert menus, "the cell gallery shows a relabel menu per image"
    moved_path = menus[0].key.split(":", 1)[1]
    menus[0].set_value("move to square").run()
    assert not app.exception, app.exception
    assert not (data / moved_path).exists()
    assert (data / "square" / Path(moved_path).name).exists() or any((data / "square").glob(Path(moved_path).stem + "-*"))
    assert any("Moved" in message.value for message in app.success)
    assert any(f"moved to **square/" in caption.value for caption in app.caption)
    journal_table = next(frame.value for frame in app.dataframe if "from" in frame.value.columns)
    assert journal_table["from"].tolist() == [moved_path]

    app.button(key="mistakes_undo").click().run()
    assert not app.exception, app.exception
    assert snapshot(data) == before
    assert RelabelJournal(data).can_redo()


def test_mistakes_page_retrains_and_then_shows_the_matrix_difference(trained):
    run_dir, data = trained
    app = open_page("app_pages/mistakes.py", data)
    app.button(key="mistakes_retrain").click().run()
    assert not app.exception, app.exception
    new_runs = [path for path in runs.list_runs(runs.default_runs_root()) if path != run_dir]
    assert len(new_runs) == 1 and runs.retrained_from(new_runs[0]) == run_dir
    assert runs.RunHandle(new_runs[0]).wait(timeout_s=240)["state"] == runs.FINISHED
    app.run()
    assert not app.exception, app.exception
    assert any(header.value.startswith(f"Compared with {run_dir.name}") for header in app.subheader)
    assert "Validation accuracy" in metrics(app)


def test_mistakes_page_without_a_finished_run_says_what_to_do(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=3)
    app = open_page("app_pages/mistakes.py", data)
    assert any("No run of this dataset yet" in info.value for info in app.info)


# ---------------------------------------------------------------- label page, with the model's help


def test_label_page_accepts_the_models_suggestion_orders_the_inbox_and_bulk_accepts(trained):
    from helpers import write

    run_dir, data = trained
    for shape in SHAPES:  # one real image of each shape, without its label, in the inbox
        write(data, f"_inbox/unknown-{shape}.png", sorted((data / shape).glob("*.png"))[0].read_bytes())
    app = open_page("app_pages/label.py", data)
    assert any(text.value.startswith("**Model suggests:**") for text in app.markdown)
    accept = app.button(key="label_accept")
    suggested = accept.label.removeprefix("Accept: ")
    assert suggested in SHAPES
    first = sorted((data / "_inbox").iterdir())[0]
    app.selectbox(key="label_order").set_value("uncertain").run()
    accept = app.button(key="label_accept")
    accept.click().run()
    assert not app.exception, app.exception
    filed = [path for path in (data / accept.label.removeprefix("Accept: ")).glob("unknown-*")]
    assert len(filed) == 1 and metrics(app)["Left in the inbox"] == "2"
    app.button(key="label_undo").click().run()
    assert len(list((data / "_inbox").iterdir())) == 3 and first.exists()
    app.slider(key="label_threshold").set_value(0.0).run()  # a 2-epoch model is rarely sure: take every suggestion
    bulk = app.button(key="label_bulk")
    assert bulk.label == "Accept all 3"
    bulk.click().run()
    assert not app.exception, app.exception
    assert list((data / "_inbox").iterdir()) == []
    assert sorted(path.name for path in data.glob("*/unknown-*")) == [f"unknown-{shape}.png" for shape in sorted(SHAPES)]
