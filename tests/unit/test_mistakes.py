"""The Mistakes page's core: confusion cells, top losses, class-average Grad-CAM, retrain lineage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.files import shapes_tree
from PIL import Image

from imgclf_core.training.run_folder import RunFolder
from imgclf_core.config import RunConfig
from imgclf_core.inspection.mistakes import cell_predictions, largest_confusions, top_losses
from imgclf_core.inspection.overlay import OVERLAY_MAX_SIDE, display_image

NAMES = ["cat", "dog", "fox"]


@pytest.fixture
def predictions(tmp_path):
    probabilities = np.array([
        [0.9, 0.05, 0.05],  # cat, right
        [0.2, 0.7, 0.1],  # cat called dog, fairly sure
        [0.45, 0.5, 0.05],  # cat called dog, unsure
        [0.01, 0.01, 0.98],  # dog called fox, very sure: the top loss
        [0.1, 0.8, 0.1],  # dog, right
    ])
    run = RunFolder(tmp_path)
    run.write_predictions([f"x/{number}.png" for number in range(5)], [0, 0, 0, 1, 1], probabilities, NAMES,
                          ["validation"] * 5)
    return run.read_predictions()


def test_cell_rows_are_the_images_of_that_cell_most_confident_first(predictions):
    assert [row["path"] for row in cell_predictions(predictions, "cat", "dog")] == ["x/1.png", "x/2.png"]
    assert [row["path"] for row in cell_predictions(predictions, "cat", "cat")] == ["x/0.png"]
    assert cell_predictions(predictions, "fox", "cat") == []


def test_top_losses_are_the_confidently_wrong_images(predictions):
    assert [row["path"] for row in top_losses(predictions, 2)] == ["x/3.png", "x/1.png"]
    assert all(row["true"] != row["predicted"] for row in top_losses(predictions, 10))


def test_largest_confusions_skip_the_diagonal():
    matrix = [[5, 2, 0], [1, 7, 4], [0, 0, 9]]
    assert largest_confusions(matrix, NAMES) == [("dog", "fox", 4), ("cat", "dog", 2), ("dog", "cat", 1)]
    assert largest_confusions([[3, 0], [0, 3]], ["a", "b"]) == []


def test_a_run_without_predictions_has_none(tmp_path):
    assert RunFolder(tmp_path).read_predictions() is None


def test_display_image_shrinks_large_photos_and_enlarges_small_ones_by_whole_pixels():
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1000), (10, 20, 30)).save(buffer, "PNG")
    shown = display_image(buffer.getvalue())
    assert shown.shape == (OVERLAY_MAX_SIDE // 2, OVERLAY_MAX_SIDE, 3) and shown.dtype == np.uint8
    small = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(pixels).save(small, "PNG")
    # enlarged by whole pixels (17 x 17 each), never interpolated: every source pixel stays one colour
    enlarged = display_image(small.getvalue())
    assert enlarged.shape == (20 * 17, 30 * 17, 3)
    assert (enlarged[::17, ::17, 0] == pixels).all() and (enlarged[16::17, 16::17, 0] == pixels).all()


def test_class_average_gradcam_is_a_normalised_heatmap_and_a_mean_image(tmp_path):
    from imgclf_core.config import ModelConfig
    from imgclf_core.inspection.mistakes import class_average_gradcam
    from imgclf_core.models.registry import create_model
    from imgclf_core.inspection.predict import Predictor

    data = shapes_tree(tmp_path / "data", per_class=4)
    model = create_model(ModelConfig(name="small_cnn"), num_classes=3, image_size=16, channels=1)
    predictor = Predictor(model, ["cross", "ring", "square"], 16, "grayscale")
    paths = sorted((data / "ring").glob("*.png")) + [tmp_path / "missing.png"]
    mean_image, heatmap = class_average_gradcam(predictor, paths, class_index=1)
    assert mean_image.shape == (16, 16, 1) and mean_image.dtype == np.uint8
    assert heatmap.ndim == 2 and 0.0 <= heatmap.min() and heatmap.max() <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="no readable images"):
        class_average_gradcam(predictor, [tmp_path / "missing.png"], class_index=0)


def test_retrained_from_names_only_a_sibling_run(tmp_path):
    root = tmp_path / "runs"
    parent, child = root / "a", root / "b"
    for folder in (parent, child):
        folder.mkdir(parents=True)
        RunFolder(folder).write_config(RunConfig(data_dir=str(tmp_path)))
    assert RunFolder(child).retrained_from() is None
    (child / RunFolder.LINEAGE).write_text(json.dumps({"retrained_from": "a"}))
    assert RunFolder(child).retrained_from() == RunFolder(parent)
    for sneaky in ("../a", "/etc", "..", ""):
        (child / RunFolder.LINEAGE).write_text(json.dumps({"retrained_from": sneaky}))
        assert RunFolder(child).retrained_from() is None
