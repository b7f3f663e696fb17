"""The labeling inbox: listing, uploads that never overwrite, orders, model suggestions (the Label page: app/)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.files import SHAPES, png_bytes, write

from imgclf_core.inspection.labeling import (
    DEFAULT_ORDER, ORDERS, default_inbox, inbox_images, inbox_order, save_into_inbox, suggest_classes, top_suggestion,
)


def test_default_inbox_prefers_the_dataset_inbox_then_one_beside_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    assert default_inbox(data) == data / "_inbox"
    (tmp_path / "inbox").mkdir()
    assert default_inbox(data) == tmp_path / "inbox"  # the shipped sample's layout
    (data / "_inbox").mkdir()
    assert default_inbox(data) == data / "_inbox"


def test_inbox_lists_image_files_only_and_uploads_never_overwrite(tmp_path):
    inbox = tmp_path / "inbox"
    write(inbox, "b.png", png_bytes(1))
    write(inbox, "a.JPG", b"bytes")
    write(inbox, ".hidden.png", png_bytes(2))
    write(inbox, "notes.txt", b"text")
    write(inbox, "sub/c.png", png_bytes(3))
    assert [path.name for path in inbox_images(inbox)] == ["a.JPG", "b.png"]
    second = save_into_inbox(inbox, "b.png", png_bytes(4))
    assert second.name == "b-2.png" and (inbox / "b.png").read_bytes() == png_bytes(1)
    for bad in ("../evil.png", ".png", "notes.txt"):
        if bad == "../evil.png":
            assert save_into_inbox(inbox, bad, png_bytes(5)).parent == inbox  # the folder part is dropped
        else:
            with pytest.raises(ValueError):
                save_into_inbox(inbox, bad, png_bytes(5))
    assert inbox_images(tmp_path / "missing") == []


def test_inbox_orders_by_uncertainty_margin_and_confidence():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.4, 0.39, 0.21], [np.nan] * 3])
    assert inbox_order(probabilities, "name") == [0, 1, 2, 3]
    assert inbox_order(probabilities, "uncertain") == [2, 0, 1, 3]
    assert inbox_order(probabilities, "margin") == [2, 0, 1, 3]
    assert inbox_order(probabilities, "confident") == [1, 0, 2, 3]  # unreadable files last in every order
    assert inbox_order(None, "uncertain") == []
    with pytest.raises(ValueError, match="unknown order"):
        inbox_order(probabilities, "random")


def test_least_sure_first_is_the_default_order_and_the_top_suggestion_reads_one_row():
    assert DEFAULT_ORDER == "uncertain" and list(ORDERS)[0] == DEFAULT_ORDER  # the Label page's first choice
    names = ["cat", "dog", "fox"]
    assert top_suggestion(np.array([0.2, 0.7, 0.1]), names) == ("dog", pytest.approx(0.7))
    assert top_suggestion(np.array([np.nan] * 3), names) is None


def test_suggestions_are_probabilities_and_nan_for_an_unreadable_file(tmp_path):
    from imgclf_core.config import ModelConfig
    from imgclf_core.models.registry import create_model
    from imgclf_core.inspection.predict import Predictor

    inbox = tmp_path / "inbox"
    paths = [write(inbox, "a.png", png_bytes(1, (20, 20))), write(inbox, "b.png", b"broken")]
    model = create_model(ModelConfig(name="small_cnn"), num_classes=3, image_size=16, channels=1)
    suggestions = suggest_classes(Predictor(model, list(SHAPES), 16, "grayscale"), paths)
    assert suggestions.shape == (2, 3)
    assert np.isclose(suggestions[0].sum(), 1.0) and np.isnan(suggestions[1]).all()


def test_a_camera_photo_is_filed_into_a_new_class_and_undo_puts_it_back_into_the_inbox(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from imgclf_core.inspection.labeling import file_capture
    from imgclf_core.inspection.relabel import RelabelJournal

    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    inbox = root / "_inbox"
    frame = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(frame, "JPEG")
    journal = RelabelJournal(root)
    move = file_capture(journal, inbox, frame.getvalue(), "mug", when="20261206-120000")
    assert move.target == "mug/camera-20261206-120000.jpg" and (root / move.target).read_bytes() == frame.getvalue()
    second = file_capture(journal, inbox, frame.getvalue(), "mug", when="20261206-120000")  # same second: numbered
    assert second.target != move.target and (root / second.target).exists()
    journal.undo(origin="label")
    assert not (root / second.target).exists() and len(list(inbox.iterdir())) == 1  # back in the inbox, kept
    from imgclf_core.data.images import ImageDecodeError

    with pytest.raises(ImageDecodeError):
        file_capture(journal, inbox, b"not a frame", "mug")
