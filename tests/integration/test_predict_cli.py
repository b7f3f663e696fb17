"""`imgclf predict` and `imgclf evaluate` on a fake run folder, and the Predictor behind them."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from helpers.cli import run_imgclf
from helpers.runs import UNTRAINED_CLASS_NAMES, UNTRAINED_IMAGE_SIZE, write_untrained_run
from PIL import Image

pytest.importorskip("tensorflow")

import keras  # noqa: E402

from imgclf_core import cli  # noqa: E402
from imgclf_core.config import ModelConfig  # noqa: E402
from imgclf_core.data.images import decode_image  # noqa: E402
from imgclf_core.models.model_io import save_model_atomically  # noqa: E402
from imgclf_core.models.registry import create_model  # noqa: E402
from imgclf_core.inspection.predict import Predictor, top_k_labels  # noqa: E402

CLASS_NAMES, IMAGE_SIZE = UNTRAINED_CLASS_NAMES, UNTRAINED_IMAGE_SIZE  # the untrained run's


def png_bytes(seed: int, size=(40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_untrained_run(tmp_path_factory.mktemp("runs") / "run")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Two images of each class except 'triangle' (a subset of the model's classes is fine)."""
    root = tmp_path_factory.mktemp("data") / "shapes"
    for class_number, name in enumerate(CLASS_NAMES[:2]):
        (root / name).mkdir(parents=True)
        for number in range(2):
            (root / name / f"{number}.png").write_bytes(png_bytes(10 * class_number + number))
    return root


@pytest.fixture(scope="module")
def predictor(run_dir):
    return Predictor.from_run(run_dir)


def test_predict_json_with_a_corrupt_file_and_gradcam(tmp_path, run_dir):
    good_a, good_b, broken = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "broken.png"
    good_a.write_bytes(png_bytes(1))
    good_b.write_bytes(png_bytes(2))
    broken.write_bytes(png_bytes(3)[:50])
    out_dir = tmp_path / "cams"
    result = run_imgclf(
        "predict", str(run_dir), str(good_a), str(broken), str(good_b),
        "--top-k", "3", "--gradcam", str(out_dir), "--json",
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    assert [item["path"] for item in items] == [str(good_a), str(broken), str(good_b)]
    assert set(items[1]) == {"path", "error"} and items[1]["error"].startswith("truncated")
    for item in (items[0], items[2]):
        assert set(item) == {"path", "top_k", "gradcam", "unfamiliar"}
        labels = [entry["label"] for entry in item["top_k"]]
        probabilities = [entry["probability"] for entry in item["top_k"]]
        assert sorted(labels) == CLASS_NAMES
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        # The overlay is drawn on the photo itself: a small one enlarged by whole pixels (12x here), viewable.
        assert decode_image(item["gradcam"]).shape == (360, 480, 3)
    assert sorted(os.listdir(out_dir)) == ["a_gradcam.png", "b_gradcam.png"]


def test_evaluate_json_on_a_subset_of_the_classes(run_dir, data_dir):
    result = run_imgclf("evaluate", str(run_dir), str(data_dir), "--json")
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert {"accuracy", "class_names", "per_class", "confusion_matrix"} <= set(evaluation)
    assert evaluation["class_names"] == CLASS_NAMES
    matrix = np.array(evaluation["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 4
    assert matrix.sum(axis=1).tolist() == [2, 2, 0]
    assert [evaluation["per_class"][name]["support"] for name in CLASS_NAMES] == [2, 2, 0]


def test_evaluate_refuses_a_class_the_model_does_not_know(tmp_path, run_dir, capsys):
    data = tmp_path / "data"
    for name in ("circle", "hexagon"):
        (data / name).mkdir(parents=True)
        (data / name / "x.png").write_bytes(png_bytes(len(name)))
    assert cli.main(["evaluate", str(run_dir), str(data)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("imgclf evaluate: error:") and "'hexagon' unknown to the model" in error


def test_evaluate_prints_a_table_without_json(run_dir, data_dir, capsys):
    assert cli.main(["evaluate", str(run_dir), str(data_dir)]) == 0
    output = capsys.readouterr().out
    assert "accuracy" in output and "confusion matrix" in output
    assert all(name in output for name in CLASS_NAMES)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_run_without_a_model_yet_is_exit_2(tmp_path, data_dir, command, capsys):
    run = write_untrained_run(tmp_path / "fresh", with_model=False)
    target = str(data_dir) if command == "evaluate" else str(data_dir / "circle" / "0.png")
    assert cli.main([command, str(run), target]) == 2
    assert f"no trained model in {run} yet" in capsys.readouterr().err


def test_predict_where_no_file_is_readable_is_exit_2(tmp_path, run_dir, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    assert cli.main(["predict", str(run_dir), str(tmp_path / "empty.png"), str(tmp_path / "missing.png")]) == 2
    captured = capsys.readouterr()
    assert "none of the 2 image(s) could be read" in captured.err
    assert "empty file" in captured.out and "unreadable" in captured.out


def test_predict_arrays_matches_the_model_and_traces_once(predictor):
    images = np.random.default_rng(0).integers(0, 256, (5, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    expected = predictor.model(images.astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(predictor.predict_arrays(images), expected, atol=1e-5)
    np.testing.assert_allclose(predictor.predict_arrays(images[:1]), expected[:1], atol=1e-5)
    np.testing.assert_allclose(predictor.predict_arrays(images, batch_size=2), expected, atol=1e-5)
    assert predictor._predict.experimental_get_tracing_count() == 1


def test_predict_arrays_refuses_wrong_dtype_and_shape(predictor):
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict_arrays(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        predictor.predict_arrays(np.zeros((1, 28, 28, 3), np.uint8))


def test_explain_returns_probabilities_and_a_heatmap(predictor):
    image = predictor.load_image(png_bytes(5))
    probabilities, heatmap = predictor.explain(image)
    np.testing.assert_allclose(probabilities, predictor.predict_arrays(image[None])[0], atol=1e-5)
    assert heatmap.ndim == 2 and 0.0 <= heatmap.min() and heatmap.max() <= 1.0


def test_top_k_orders_by_probability_and_keeps_class_order_on_ties():
    assert top_k_labels(np.array([0.2, 0.5, 0.3]), CLASS_NAMES, 2) == [("square", 0.5), ("triangle", 0.3)]
    assert [label for label, _ in top_k_labels(np.array([0.4, 0.2, 0.4]), CLASS_NAMES, 5)] == [
        "circle", "triangle", "square",
    ]
    with pytest.raises(ValueError, match="at least 1"):
        top_k_labels(np.array([0.2, 0.5, 0.3]), CLASS_NAMES, 0)


def test_predict_files_never_overwrites_an_overlay_of_the_same_stem(tmp_path, predictor):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.png").write_bytes(png_bytes(len(folder)))
    paths = [tmp_path / "one" / "photo.png", tmp_path / "two" / "photo.png"]
    results = predictor.predict_files(paths, top_k=1, gradcam_dir=tmp_path / "cams")
    assert [len(item["top_k"]) for item in results] == [1, 1]
    assert sorted(os.listdir(tmp_path / "cams")) == ["photo_2_gradcam.png", "photo_gradcam.png"]


def test_imagenet_predictor_classifies_with_1000_names():
    pytest.importorskip("imgclf_core.models.efficientnet_lite", reason="imgclf_core/models/efficientnet_lite.py not written yet")
    try:
        predictor = Predictor.imagenet()
    except (FileNotFoundError, ImportError) as error:
        pytest.skip(f"the offline EfficientNet-Lite0 weights or class names are not installed: {error}")
    assert len(predictor.class_names) == 1000
    image = np.zeros((224, 224, 3), np.uint8)
    image[:, :, 0] = 200
    probabilities, heatmap = predictor.explain(image)
    assert probabilities.shape == (1000,) and probabilities.sum() == pytest.approx(1.0, abs=1e-3)
    assert heatmap.shape == (7, 7) and np.isfinite(heatmap).all()
    assert predictor.top_k(probabilities, 3)[0][0] in predictor.class_names


def _corrupt_model(run):
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 2])
    return f"corrupt model file: {run / 'model.keras'}"


def _lambda_model(run):
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    doubled = keras.layers.Lambda(lambda tensor: tensor * 2, name="sneaky")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(keras.layers.Flatten()(doubled))
    keras.saving.save_model(keras.Model(inputs, outputs), run / "model.keras")
    return "Lambda layers run arbitrary code (sneaky)"


def _two_class_model(run):
    model = create_model(ModelConfig(name="small_cnn"), 2, IMAGE_SIZE, 3)
    save_model_atomically(model, run / "model.keras")
    return "the model predicts 2 classes but 3 class names were given"


@pytest.mark.parametrize("spoil", [_corrupt_model, _lambda_model, _two_class_model])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_unsafe_or_broken_run_models_are_refused_end_to_end(tmp_path, data_dir, spoil, command, capsys):
    run = write_untrained_run(tmp_path / "run")
    expected = spoil(run)
    target = str(data_dir) if command == "evaluate" else str(data_dir / "circle" / "0.png")
    # In this process (the CLI's own subprocess runs are above): six more TensorFlow imports cost a minute.
    assert cli.main([command, str(run), target, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    last_line = captured.err.strip().splitlines()[-1]
    assert last_line.startswith(f"imgclf {command}: error: ") and expected in last_line, captured.err


def test_flip_tta_averages_each_image_with_its_mirror_in_predict_and_evaluate(tmp_path, run_dir, data_dir):
    from imgclf_core.inspection.predict import Predictor

    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(1))
    plain = json.loads(run_imgclf("predict", str(run_dir), str(image), "--json").stdout)[0]["top_k"]
    flipped = run_imgclf("predict", str(run_dir), str(image), "--json", "--flip-tta")
    assert flipped.returncode == 0, flipped.stderr
    predictor = Predictor.from_run(run_dir)
    pixels = predictor.load_image(image)[None]
    expected = (predictor.predict_arrays(pixels) + predictor.predict_arrays(pixels[:, :, ::-1].copy())) / 2
    by_label = {entry["label"]: entry["probability"] for entry in json.loads(flipped.stdout)[0]["top_k"]}
    assert [by_label[name] for name in predictor.class_names] == pytest.approx(expected[0].tolist(), abs=1e-5)
    assert by_label != {entry["label"]: entry["probability"] for entry in plain}
    # the Predict page's checkbox: the same average from a predictor made without the flip
    np.testing.assert_allclose(predictor.predict_arrays(pixels, flip_average=True), expected, atol=1e-5)
    evaluated = run_imgclf("evaluate", str(run_dir), str(data_dir), "--json", "--flip-tta")
    assert evaluated.returncode == 0, evaluated.stderr
    assert 0.0 <= json.loads(evaluated.stdout)["accuracy"] <= 1.0


def test_similar_by_a_runs_model_lists_the_images_nearest_in_its_features(tmp_path, run_dir, data_dir, predictor):
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.inspection.similar import SimilarityIndex, query_similar

    index = scan_dataset(data_dir)
    outputs = predict_dataset_features(predictor, index)
    query = index.records[0]
    unit = outputs - outputs.mean(axis=0)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    order = [index.records[row].path for row in np.argsort(-(unit @ unit[0]), kind="stable") if row != 0]
    result = run_imgclf("similar", str(data_dir), str(data_dir / query.path), "--run", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["by"] == f"the features of {run_dir.name}'s model"
    assert [os.path.relpath(item["path"], data_dir) for item in document["neighbours"]] == order
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(99))
    missing = run_imgclf("similar", str(data_dir), str(outside), "--run", str(tmp_path / "no-run"))
    assert missing.returncode == 2 and "no-run" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    # an image from outside the dataset: its features by the same model, every image ranked by them
    similarity = SimilarityIndex.of_run(predictor, index, features=outputs, run_name=run_dir.name)
    neighbours, same_as = query_similar(similarity, outside, top=len(index.records))
    vector = predictor.features_and_probabilities(predictor.load_image(outside)[None])[0][0] - outputs.mean(axis=0)
    expected = np.argsort(-(unit @ (vector / np.linalg.norm(vector))), kind="stable")
    assert same_as is None and [n.path for n in neighbours] == [index.records[row].path for row in expected]


def predict_dataset_features(predictor, index) -> np.ndarray:
    """The features predict_dataset returns, checked against the model's own pass: the same rows, in order."""
    from imgclf_core.inspection.predict import predict_dataset

    outputs = predict_dataset(predictor, index)
    images = np.stack([predictor.load_image(index.absolute_path(record.path)) for record in index.records])
    features, probabilities = predictor.features_and_probabilities(images)
    np.testing.assert_allclose(outputs.features, features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probabilities, predictor.predict_arrays(images), atol=1e-5)
    assert outputs.predicted[index.records[0].path][0] == predictor.class_names[int(np.argmax(probabilities[0]))]
    return features
