"""Export: each format round-trips with parity and loads without imgclf; a mismatch fails loudly, leaving nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import run_imgclf
from helpers.files import ROOT, SHAPES
from helpers.pages import open_page
from helpers.runs import point_run_at
from PIL import Image

from imgclf_app.export_view import export_zip

from imgclf_core import cli

from imgclf_core.export import exporter as export

from imgclf_core.training import run_catalog
from imgclf_core.training.run_folder import RunFolder
from imgclf_core.export.exporter import ExportError, ExportParityError, export_run

EXAMPLE = ROOT / "examples" / "classify_with_export.py"
# Runs the example with imgclf_core made unimportable: it must stand on numpy, Pillow and TensorFlow alone.
WITHOUT_IMGCLF = (
    "import runpy, sys; sys.modules['imgclf_core'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.fixture
def trained_template(shapes_run_template) -> Path:
    """The session's small_cnn run trained on 16 px grayscale shapes; exports only read it."""
    run_dir, _ = shapes_run_template
    return run_dir


@pytest.fixture(scope="module")
def predictor(shapes_run_template):
    from imgclf_core.inspection.predict import Predictor

    return Predictor.from_run(shapes_run_template[0])


def copy_run(template: Path, destination: Path, without: tuple[str, ...] = ()) -> Path:
    """A copy of the run folder, leaving out the named files (its dataset stays where it is)."""
    shutil.copytree(template, destination, ignore=lambda folder, names: [name for name in names if name in without])
    return destination


def folder_snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def probe_image(template: Path, tmp_path: Path) -> Path:
    """A validation image made RGBA, 2.5x larger, with a transparent corner: the example must decode it as we do."""
    row = RunFolder(template).read_predictions()[0]
    data_dir = Path(RunFolder(template).read_config().data_dir)
    image = Image.open(data_dir / row["path"]).convert("RGBA").resize((40, 40), Image.Resampling.NEAREST)
    pixels = np.asarray(image).copy()
    pixels[:8, :8, 3] = 0
    path = tmp_path / "probe.png"
    Image.fromarray(pixels).save(path)
    return path


def run_example(artifact: Path, image: Path) -> list[tuple[str, float]]:
    """The example's top-3 (label, probability), run in a fresh Python without imgclf_core."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_IMGCLF, str(EXAMPLE), str(artifact), str(image)],
        capture_output=True, text=True, timeout=180, env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    return [(label, float(probability)) for label, probability in lines]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("format", ["keras", "savedmodel", "tflite"])
def test_export_round_trips_with_parity_and_loads_without_imgclf(format, trained_template, predictor, tmp_path):
    out = tmp_path / "export"
    messages: list[str] = []
    report = export_run(trained_template, format, out, float16=format == "tflite", golden_count=12,
                        progress=messages.append)

    parity = report.parity
    assert parity.golden_images == 12 and parity.top1_matches == 12 and parity.passed
    assert parity.tolerance == export.TOLERANCES[format]
    assert parity.max_probability_difference <= parity.tolerance
    assert report.artifact_path == out / export.ARTIFACT_NAMES[format] and report.artifact_path.exists()
    assert parity.size_bytes > 10_000
    assert any("golden" in message for message in messages)
    # Golden images cover every class (round-robin), all from the validation set.
    validation = {row["path"] for row in RunFolder(trained_template).read_predictions()}
    assert set(report.golden_paths) <= validation
    assert {path.split("/")[0] for path in report.golden_paths[:3]} == set(SHAPES)

    class_names = predictor.class_names
    assert (out / "labels.txt").read_text(encoding="utf-8") == "".join(f"{name}\n" for name in class_names)
    card = (out / "model_card.md").read_text(encoding="utf-8")
    evaluation = RunFolder(trained_template).read_evaluation()
    for expected in (*class_names, f"{evaluation['accuracy']:.4f}", report.exported_at[:10], "tensorflow", "keras",
                     "float32", "(N, 16, 16, 1)", "0-255"):
        assert expected in card, expected
    assert str(Path(RunFolder(trained_template).read_config().data_dir)) not in card  # no local paths in a shared card
    document = json.loads((out / "parity.json").read_text(encoding="utf-8"))
    assert document["parity"] == parity.to_json_dict() and document["golden_images"] == list(report.golden_paths)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export"]  # no staging folder left behind

    if format == "tflite":
        half = report.float16
        assert half is not None and half.artifact == "model-float16.tflite" and (out / half.artifact).is_file()
        assert half.golden_images == 12 and not half.top1_required and half.passed
        assert 0 < half.max_probability_difference < 0.05 and half.size_bytes < 0.7 * parity.size_bytes
        assert document["float16"] == half.to_json_dict()
    else:
        assert report.float16 is None

    image = probe_image(trained_template, tmp_path)
    expected = predictor.predict_arrays(predictor.load_image(image)[None])[0]
    artifacts = [out, out / "model-float16.tflite"] if format == "tflite" else [out]
    for artifact in artifacts:
        top3 = run_example(artifact, image)
        assert top3[0][0] == class_names[int(np.argmax(expected))], artifact
        tolerance = 0.05 if artifact.name.endswith("float16.tflite") else parity.tolerance + 1e-6
        for label, probability in top3:
            assert abs(probability - expected[class_names.index(label)]) <= tolerance, (artifact, label)


def test_golden_images_fall_back_to_the_runs_split_without_predictions(trained_template, tmp_path):
    run_dir = copy_run(trained_template, tmp_path / "run", without=("predictions.csv", "evaluation.json"))
    report = export_run(run_dir, "keras", tmp_path / "out", golden_count=100)
    assert sorted(report.golden_paths) == sorted(row["path"] for row in RunFolder(trained_template).read_predictions())
    assert "No evaluation yet" in (tmp_path / "out" / "model_card.md").read_text(encoding="utf-8")


def test_no_readable_golden_image_is_a_clear_error(trained_template, tmp_path):
    run_dir = copy_run(trained_template, tmp_path / "run")
    point_run_at(run_dir, tmp_path / "moved away")
    with pytest.raises(ExportError, match="no golden image could be read"):
        export_run(run_dir, "keras", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- parity failures leave nothing


def shift_classes_before_writing(monkeypatch) -> None:
    """Make the written SavedModel really differ: its output layer's classes shift by one before it is saved."""
    write = export.write_saved_model

    def write_shifted(model, path):
        layer = model.get_layer("predictions")
        kernel, bias = layer.get_weights()
        layer.set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)])  # every top-1 moves to the next class
        write(model, path)

    monkeypatch.setattr(export, "write_saved_model", write_shifted)


def test_a_wrong_artifact_fails_the_export_and_keeps_the_previous_export(trained_template, tmp_path, monkeypatch):
    out = tmp_path / "export"
    export_run(trained_template, "keras", out, golden_count=6)
    before = folder_snapshot(out)
    shift_classes_before_writing(monkeypatch)
    with pytest.raises(ExportParityError, match="top-1 agrees on 0/6 golden images") as raised:
        export_run(trained_template, "savedmodel", out, golden_count=6)
    assert raised.value.parity.artifact == "saved_model" and not raised.value.parity.passed
    assert raised.value.parity.worst_image in str(raised.value)
    assert folder_snapshot(out) == before  # the previous export, untouched
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export"]


def test_a_difference_above_tolerance_fails_even_when_top1_agrees(trained_template, tmp_path, monkeypatch):
    measured = export.artifact_probabilities

    def nudged(artifact, images):
        probabilities = measured(artifact, images).copy()
        probabilities[2, int(np.argmin(probabilities[2]))] += 5e-4  # the lowest class: top-1 unchanged
        return probabilities

    monkeypatch.setattr(export, "artifact_probabilities", nudged)
    with pytest.raises(ExportParityError) as raised:
        export_run(trained_template, "savedmodel", tmp_path / "out", golden_count=6)
    parity = raised.value.parity
    assert parity.top1_matches == 6 and parity.max_probability_difference == pytest.approx(5e-4, rel=0.01)
    run_config = RunFolder(trained_template).read_config()
    assert parity.worst_image == export.golden_candidates(trained_template, run_config)[2]
    assert list(tmp_path.iterdir()) == []  # neither the export nor its staging folder


# ---------------------------------------------------------------- the output folder


def test_an_unrelated_non_empty_folder_or_a_file_is_refused_untouched(trained_template, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ExportError, match="not empty and holds no previous export"):
        export_run(trained_template, "keras", folder)
    assert folder_snapshot(folder) == {"holiday.jpg": b"precious"}
    with pytest.raises(ExportError, match="not a folder"):
        export_run(trained_template, "keras", folder / "holiday.jpg")


def test_an_empty_folder_is_used_and_a_previous_export_replaced_whole(trained_template, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    export_run(trained_template, "keras", out, golden_count=3)
    (out / "stale-note.txt").write_text("from the old export")
    export_run(trained_template, "keras", out, golden_count=3)
    assert sorted(path.name for path in out.iterdir()) == ["labels.txt", "model.keras", "model_card.md", "parity.json"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("arguments, message", [
    (("--format", "onnx"), "unknown export format 'onnx'"),
    (("--format", "keras", "--float16"), "float16 applies to the tflite format only"),
    (("--format", "savedmodel", "--int8"), "int8 applies to the tflite format only"),
    (("--format", "keras", "--golden", "0"), "at least one golden image"),
])
def test_bad_options_are_refused_before_anything_is_written(arguments, message, trained_template, tmp_path, capsys):
    assert cli.main(["export", str(trained_template), "--out", str(tmp_path / "out"), *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("imgclf export: error:") and message in error and "\n" not in error
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- CLI


def test_cli_export_json_report(trained_template, tmp_path):
    out = tmp_path / "tfl"
    result = run_imgclf("export", str(trained_template), "--format", "tflite", "--float16", "--golden", "5",
                        "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    assert document["format"] == "tflite" and document["artifact_path"] == str(out / "model.tflite")
    assert document["parity"]["golden_images"] == 5 and document["parity"]["passed"]
    assert document["float16"]["artifact"] == "model-float16.tflite" and document["float16"]["top1_required"] is False
    assert "export: checking model.tflite on 5 golden images" in result.stderr


@pytest.mark.parametrize("case", ["no model", "not a run", "unknown format"])
def test_cli_export_bad_input_exits_2_with_one_line(case, trained_template, tmp_path):
    run_dir = copy_run(trained_template, tmp_path / "run", without=("model.keras",))
    arguments = {
        "no model": (str(run_dir), "--format", "keras"),
        "not a run": (str(tmp_path), "--format", "keras"),
        "unknown format": (str(trained_template), "--format", "pickle"),
    }[case]
    result = run_imgclf("export", *arguments, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    expected = {
        "no model": "no trained model", "not a run": "not a run folder", "unknown format": "unknown export format",
    }
    assert len(lines) == 1 and lines[0].startswith("imgclf export: error:") and expected[case] in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_cli_parity_failure_exits_1_with_one_line(trained_template, tmp_path, monkeypatch, capsys):
    shift_classes_before_writing(monkeypatch)
    code = cli.main(["export", str(trained_template), "--format", "savedmodel", "--golden", "4",
                     "--out", str(tmp_path / "out"), "--json"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    failures = [line for line in captured.err.splitlines() if line.startswith("imgclf export:")]
    assert len(failures) == 1 and "parity check failed" in failures[0] and "saved_model" in failures[0]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the Train page


def test_train_page_exports_shows_parity_and_offers_a_zip(trained_template, tmp_path, monkeypatch):
    data = Path(RunFolder(trained_template).read_config().data_dir)
    run_dir = copy_run(trained_template, run_catalog.default_runs_root() / trained_template.name)
    app = open_page("app_pages/train.py", data)
    assert not app.get("download_button")  # nothing exported yet
    app.button(key="export_start").click().run()
    assert not app.exception, app.exception
    golden = len(RunFolder(trained_template).read_predictions())  # fewer validation images than the default 32
    figures = {metric.label: metric.value for metric in app.metric}
    assert figures["Golden images"] == str(golden) and figures["Top-1 agreement"] == f"{golden}/{golden}"
    assert figures["Max probability difference"] == "0.0e+00"
    out = run_dir / "exports" / "keras"
    assert (out / "model.keras").is_file()
    assert [button.label for button in app.get("download_button")] == ["Download the keras export (.zip)"]
    names = zipfile.ZipFile(io.BytesIO(export_zip(str(out), "top", 0))).namelist()
    assert sorted(names) == ["top/labels.txt", "top/model.keras", "top/model_card.md", "top/parity.json"]

    # A failing export says so in one line and leaves the previous export (and its button) in place.
    monkeypatch.setattr(export, "artifact_probabilities", lambda artifact, images: np.zeros((len(images), 3)))
    app.button(key="export_start").click().run()
    assert not app.exception, app.exception
    errors = [error.value for error in app.error]
    assert len(errors) == 1 and errors[0].startswith("Export failed:") and "\n" not in errors[0]
    assert [button.label for button in app.get("download_button")] == ["Download the keras export (.zip)"]


def test_the_readme_shows_the_example_as_it_is():
    """The README's export example is the file the tests run (everything after its docstring)."""
    body = EXAMPLE.read_text(encoding="utf-8").split("\n", 1)[1]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```python\n{body}```" in readme


def test_int8_tflite_is_written_measured_and_reported(trained_template, tmp_path, predictor):
    out = tmp_path / "tfl"
    result = run_imgclf("export", str(trained_template), "--format", "tflite", "--int8", "--golden", "12",
                        "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    int8 = document["int8"]
    assert int8["artifact"] == "model-int8.tflite" and int8["top1_required"] is False and int8["passed"]
    assert int8["size_bytes"] < 0.5 * document["parity"]["size_bytes"]  # int8 weights: about a quarter
    assert int8["top1_matches"] >= 10  # of 12
    assert "from 200 training images" in result.stderr or "training images)" in result.stderr
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(out / "model-int8.tflite"))
    kinds = {detail["dtype"] for detail in interpreter.get_tensor_details()}
    assert np.int8 in kinds  # quantized inside, float32 in and out
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert "model-int8.tflite" in (out / "model_card.md").read_text()


def test_a_keras_export_is_the_calibrated_model(trained_template, tmp_path, predictor):
    from imgclf_core.export.exporter import export_run
    from imgclf_core.models.model_io import load_model_checked
    from imgclf_core.training.run_folder import RunFolder

    run_dir = copy_run(trained_template, tmp_path / "run")
    RunFolder(run_dir).path.joinpath("calibration.json").write_text('{"temperature": 2.5}')
    export_run(run_dir, "keras", tmp_path / "out", golden_count=4)
    folder = RunFolder(run_dir)
    data_dir = Path(folder.read_config().data_dir)
    images = np.stack([predictor.load_image(data_dir / row["path"]) for row in folder.read_predictions()[:4]])
    exported = load_model_checked(tmp_path / "out" / "model.keras").predict(images.astype("float32"), verbose=0)
    raw = folder.load_model().predict(images.astype("float32"), verbose=0)
    from imgclf_core.training.calibration import apply_temperature

    np.testing.assert_allclose(exported, apply_temperature(raw, 2.5), atol=1e-5)


def test_train_page_exports_an_int8_tflite_beside_the_float_one(trained_template):
    data = Path(RunFolder(trained_template).read_config().data_dir)
    copy_run(trained_template, run_catalog.default_runs_root() / trained_template.name)
    app = open_page("app_pages/train.py", data)
    assert app.checkbox(key="export_int8").disabled  # keras, the default format: no int8
    app.selectbox(key="export_format").set_value("tflite").run()
    app.checkbox(key="export_int8").check().run()
    app.button(key="export_start").click().run()
    assert not app.exception, app.exception
    captions = [caption.value for caption in app.caption if "model-int8.tflite" in caption.value]
    assert len(captions) == 1 and "int8 weights and activations" in captions[0], captions
