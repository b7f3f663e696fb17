"""The Predict and Mistakes pages under AppTest, on a tiny model really trained on real image files."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from helpers.files import SHAPES, png_bytes, shapes_tree, write
from helpers.pages import metrics, open_page
from PIL import Image

from imgclf_core.training import run_catalog, run_folder, run_process
from imgclf_core.training.run_folder import RunFolder
from imgclf_core.inspection.relabel import QUARANTINE, RelabelJournal, describe_move


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file() and ".imgclf" not in path.parts}


def media_files(monkeypatch) -> dict[str, bytes]:
    """Every file the page hands to Streamlit's media storage (images), by file id: the pixels it draws."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stored: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        stored[file_id] = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data).read_bytes()
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return stored


def drawn_pixels(stored: dict[str, bytes], image) -> np.ndarray:
    file_id = image.value[0].rsplit("/", 1)[-1].split(".")[0]
    return np.asarray(Image.open(io.BytesIO(stored[file_id])))


def page_order(app) -> list[str]:
    """Subheaders, messages, buttons and image captions in the order the page draws them."""
    order = []
    for node in app.main:
        if node.type in ("subheader", "success", "error"):
            order.append(f"{node.type}: {node.value}")
        elif node.type == "button":
            order.append(f"button:{node.key}")
        elif node.type == "image":
            order.append(f"image: {node.captions[0] if node.captions else ''}")
    return order


# ---------------------------------------------------------------- predict page


def test_predict_page_classifies_uploads_and_reports_a_corrupt_one(shapes_run):
    run_dir, data = shapes_run
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


def test_predict_page_classifies_with_an_uploaded_model_and_refuses_unsafe_or_broken_ones(shapes_run, tmp_path):
    import keras

    from imgclf_core.inspection.predict import Predictor

    run_dir, data = shapes_run
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


def test_mistakes_page_shows_the_matrix_and_a_cell_gallery_and_relabel_undo_restores_files(shapes_run):
    run_dir, data = shapes_run
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


def test_mistakes_gallery_draws_each_image_crisp_beside_its_gradcam_and_top_losses_by_loss(shapes_run, monkeypatch):
    from imgclf_core.inspection.mistakes import top_losses

    run_dir, data = shapes_run
    stored = media_files(monkeypatch)
    app = open_page("app_pages/mistakes.py", data)
    gallery = [image for image in app.get("image")
               if image.captions and (" → " in image.captions[0] or image.captions[0].startswith("Grad-CAM for "))]
    kinds = ["gradcam" if image.captions[0].startswith("Grad-CAM for ") else "plain" for image in gallery]
    assert gallery and kinds == ["plain", "gradcam"] * (len(gallery) // 2)  # the plain image, then its Grad-CAM
    for image in gallery:
        pixels = drawn_pixels(stored, image)
        assert pixels.shape[:2] == (224, 224)  # the 16 px images, enlarged by 14 whole pixels
        if not image.captions[0].startswith("Grad-CAM"):
            blocks = pixels[::14, ::14]
            assert np.array_equal(np.repeat(np.repeat(blocks, 14, axis=0), 14, axis=1), pixels)  # crisp, not blurred

    losses = [image.captions[0] for image in app.get("image") if image.captions and image.captions[0].startswith("loss ")]
    expected = top_losses(RunFolder(run_dir).read_predictions(), 12)
    assert losses == [f"loss {row['loss']:.2f} · {row['true']} → {row['predicted']} · {row['probability']:.0%}"
                      for row in expected]
    values = [float(re.match(r"loss (\S+) ", caption).group(1)) for caption in losses]
    assert values == sorted(values, reverse=True)


def test_mistakes_undo_sits_under_the_message_under_the_moved_image_and_walks_only_this_pages_moves(shapes_run):
    
    run_dir, data = shapes_run
    journal = RelabelJournal(data)
    audit_move = journal.move(sorted((data / "cross").glob("*.png"))[-1].relative_to(data).as_posix(), QUARANTINE,
                              origin="audit")  # made on the Audit page: not this page's to undo
    app = open_page("app_pages/mistakes.py", data)
    undo = app.button(key="mistakes_undo")
    assert undo.disabled and undo.label == "Undo"
    menus = [box for box in app.selectbox if box.key and box.key.startswith("losses:")]
    assert len(menus) > 1, "the top-losses gallery shows a relabel menu per image"
    moved_path = menus[-1].key.split(":", 1)[1]  # the last one: far below the top of the gallery
    row = next(row for row in RunFolder(run_dir).read_predictions() if row["path"] == moved_path)
    source_class = moved_path.split("/")[0]
    target = next(shape for shape in SHAPES if shape != source_class)
    menus[-1].set_value(f"move to {target}").run()
    assert not app.exception, app.exception

    move = journal.undoable("mistakes")[0]
    assert move.source == moved_path and move.origin == "mistakes"
    order = page_order(app)
    message = f"success: {describe_move(move, 'Moved')}."
    assert order.count(message) == 1
    at = order.index(message)
    item = f"image: loss {row['loss']:.2f} · {row['true']} → {row['predicted']} · {row['probability']:.0%}"
    more_like_this = f"button:similar:losses:{moved_path}"
    # under the image it moved (and its More-like-this button)
    assert order[at - 3:at] == [item, f"image: Grad-CAM for {row['predicted']}", more_like_this]
    assert order[at + 1:at + 3] == ["button:mistakes_undo", "button:mistakes_redo"]  # Undo right under the message
    assert order.index("subheader: Top losses") < at < order.index("subheader: Average Grad-CAM of a class")
    assert app.button(key="mistakes_undo").label == f"Undo: {describe_move(move)}"
    assert app.button(key="mistakes_undo").label.startswith(f"Undo: move {Path(moved_path).name} from {source_class} to {target}")
    assert any(caption.value == "Undo and Redo are above, under the last message." for caption in app.caption)

    app.button(key="mistakes_undo").click().run()
    assert not app.exception, app.exception
    assert (data / moved_path).exists() and (data / audit_move.target).exists()  # the audit move stays
    order = page_order(app)
    at = order.index(f"success: Undid {describe_move(move)}.")
    assert order[at - 3:at] == [item, f"image: Grad-CAM for {row['predicted']}", more_like_this]
    assert order[at + 1:at + 3] == ["button:mistakes_undo", "button:mistakes_redo"]
    assert app.button(key="mistakes_redo").label == f"Redo: {describe_move(move)}"
    assert app.button(key="mistakes_undo").disabled
    app.run()  # the message was shown once: Undo and Redo are back in the journal section, at the bottom
    order = page_order(app)
    assert order.index("subheader: Relabel journal") < order.index("button:mistakes_redo")


def test_mistakes_page_retrains_and_then_shows_the_matrix_difference(shapes_run):
    run_dir, data = shapes_run
    app = open_page("app_pages/mistakes.py", data)
    app.button(key="mistakes_retrain").click().run()
    assert not app.exception, app.exception
    new_runs = [path for path in run_catalog.list_runs(run_catalog.default_runs_root()) if path != run_dir]
    assert len(new_runs) == 1 and RunFolder(new_runs[0]).retrained_from() == RunFolder(run_dir)
    assert run_process.RunHandle(new_runs[0]).wait(timeout_s=240)["state"] == run_folder.FINISHED
    app.run()
    assert not app.exception, app.exception
    assert any(header.value.startswith(f"Compared with {run_dir.name}") for header in app.subheader)
    assert "Validation accuracy" in metrics(app)
    from imgclf_app.views import accuracy_text

    compared = next(metric for metric in app.metric if metric.delta)
    assert compared.value == accuracy_text(RunFolder(new_runs[0]).read_evaluation("validation")["accuracy"])
    assert re.fullmatch(r"[+-]\d+\.\d%", compared.delta)  # the change, at the same 1-decimal precision


def test_mistakes_page_without_a_finished_run_says_what_to_do(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=3)
    app = open_page("app_pages/mistakes.py", data)
    assert any("No run of this dataset yet" in info.value for info in app.info)


# ---------------------------------------------------------------- label page, with the model's help


def test_label_page_accepts_the_models_suggestion_orders_the_inbox_and_bulk_accepts(shapes_run):
    run_dir, data = shapes_run
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


def test_label_page_with_a_model_shows_the_least_sure_image_first_and_suggestions_in_the_grid(shapes_run):
    from imgclf_core.inspection.labeling import inbox_images, inbox_order, suggest_classes
    from imgclf_core.inspection.predict import Predictor

    run_dir, data = shapes_run
    for shape in SHAPES:
        for number in range(2):
            write(data, f"_inbox/unknown-{shape}-{number}.png",
                  sorted((data / shape).glob("*.png"))[number].read_bytes())
    files = inbox_images(data / "_inbox")
    suggestions = suggest_classes(Predictor.from_run(run_dir), files)
    ranked = inbox_order(suggestions, "uncertain")

    app = open_page("app_pages/label.py", data)
    assert app.selectbox(key="label_order").value == "uncertain"  # least sure first, without asking
    shown = [image.captions[0] for image in app.get("image") if image.captions and image.captions[0].startswith("unknown-")]
    assert shown == [files[ranked[0]].name]

    app.radio(key="label_mode").set_value("Grid").run()
    assert not app.exception, app.exception
    captions = [image.captions[0] for image in app.get("image") if image.captions and image.captions[0].startswith("suggests ")]
    names = Predictor.from_run(run_dir).class_names
    assert captions == [f"suggests {names[int(np.argmax(suggestions[row]))]} {float(np.max(suggestions[row])):.0%}"
                        for row in ranked]
    checkboxes = [box.label for box in app.checkbox if box.key and box.key.startswith("label_pick:")]
    assert checkboxes == [files[row].name for row in ranked]


def test_the_dataset_grid_filters_by_the_current_runs_predictions(shapes_run):
    from imgclf_core.inspection.predict import Predictor, predict_dataset
    from imgclf_core.data.dataset import scan_dataset

    run_dir, data = shapes_run
    expected = predict_dataset(Predictor.from_run(run_dir), scan_dataset(data)).predicted
    wrong = sorted(path for path, (predicted, _) in expected.items() if predicted != path.split("/")[0])
    assert 0 < len(wrong) < len(expected)  # a model trained for 2 epochs: some right, some wrong
    app = open_page("app_pages/dataset.py", data)
    app.toggle(key="grid_by_prediction").set_value(True).run()
    assert not app.exception, app.exception
    app.selectbox(key="grid_page_size").set_value(96).run()
    app.selectbox(key="grid_verdict").set_value("wrong").run()

    def grid() -> list[str]:  # "ring · 03.png → cross 61%"
        return [image.captions[0] for image in app.get("image") if image.captions and " → " in image.captions[0]]

    shown = grid()
    assert len(shown) == min(len(wrong), 96)
    for caption in shown:
        label, rest = caption.split(" · ", 1)
        assert rest.split(" → ")[1].split()[0] != label
    app.selectbox(key="grid_verdict").set_value("right or wrong").run()
    confidences = [confidence for _, confidence in expected.values()]
    top = int(max(confidences) * 100) // 5 * 5  # the 5% slider step just under the most confident image
    for window in ((top, 100), (0, top), (min(top + 5, 100), 100)):
        app.slider(key="grid_confidence").set_value(window).run()
        inside = [c for c in confidences if window[0] / 100 <= c <= window[1] / 100]
        assert len(grid()) == min(len(inside), 96), window
        assert all(window[0] <= float(caption.rsplit(" ", 1)[1].rstrip("%")) + 0.5 for caption in grid())
    assert top < 100  # so the last window, above every image, shows none


def test_more_like_this_compares_by_the_current_runs_model_first(shapes_run):
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.inspection.predict import Predictor
    from imgclf_core.inspection.similar import IMAGENET_EMBEDDINGS, SimilarityIndex

    run_dir, data = shapes_run
    index = scan_dataset(data)
    query = index.records[0].path
    similarity = SimilarityIndex.of_run(Predictor.from_run(run_dir), index, run_name=run_dir.name)
    expected = [f"`{Path(n.path).name}`" for n in similarity.nearest_to_path(query, 8)]
    app = open_page("app_pages/dataset.py", data)
    app.button(key=f"inspect:{query}").click().run()
    app.button(key=f"similar:inspect:{query}").click().run()
    assert not app.exception, app.exception
    choice = app.radio(key="similar_by")
    assert choice.options == [f"the model of {run_dir.name}", IMAGENET_EMBEDDINGS] and choice.index == 0
    shown = [markdown.value.split("  \n")[1] for markdown in app.markdown if "  \n`" in markdown.value]
    assert shown == expected
    assert any(f"by the features of {run_dir.name}'s model" in caption.value for caption in app.caption)


def test_predict_page_flip_checkbox_averages_with_the_mirror_image_and_marks_unfamiliar_uploads(shapes_run):
    from imgclf_core.inspection.predict import Predictor

    run_dir, data = shapes_run
    predictor = Predictor.from_run(run_dir)
    noise = png_bytes(7, (40, 30))  # not mirror-symmetric, unlike the shapes: the flip must change the figure
    image = predictor.load_image(noise)[None]
    plain, mirrored = predictor.predict_arrays(image)[0], predictor.predict_arrays(image[:, :, ::-1].copy())[0]
    assert abs(float(plain.max()) - float(((plain + mirrored) / 2).max())) > 1e-4  # 10x the tolerance below
    app = open_page("app_pages/predict.py", data)
    app.file_uploader(key="predict_files").set_value([("noise.png", noise, "image/png")]).run()

    def confidence() -> float:
        table = next(frame.value for frame in app.dataframe if "predicted" in frame.value.columns)
        return float(table["confidence"][0])

    assert confidence() == pytest.approx(float(plain.max()), abs=1e-5)
    app.checkbox(key="predict_flip").check().run()
    assert not app.exception, app.exception
    assert confidence() == pytest.approx(float(((plain + mirrored) / 2).max()), abs=1e-5)
    expected = predictor.unfamiliar(image)  # the run was evaluated on its validation split: it has a verdict
    table = next(frame.value for frame in app.dataframe if "predicted" in frame.value.columns)
    assert expected is not None and bool(table["unlike the training data"][0]) == expected[0]["flagged"]
