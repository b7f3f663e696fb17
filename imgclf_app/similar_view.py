"""More like this: the dataset's images nearest to one image (a dataset image or an upload), on any page.

The search itself is imgclf_core.inspection.similar: by the features of the current run's model when the
dataset has a trained run (they tell the dataset's own look-alikes apart), or by the ImageNet embeddings
(a choice in the dialog; the only one without a run). The first query of a dataset embeds the images the
cache lacks, or runs the model over them (a progress bar); later ones reuse the index kept here for the
process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from imgclf_app.current_run import current_run_dir
from imgclf_app.dataset_loaders import compute_for_scan, dataset_predictions_of, kept_for_scan
from imgclf_app.session_keys import SIMILAR_NOW
from imgclf_app.views import in_columns
from imgclf_core.data.dataset import DatasetIndex
from imgclf_core.data.images import ImageDecodeError
from imgclf_core.data.thumbnails import display_array
from imgclf_core.training.run_folder import RunFolder

SIMILAR_TOP = 8
SIMILAR_COLUMNS = 4
SIMILAR_SIDE = 160
_KEPT_INDEXES = 2  # datasets whose similarity index stays in memory (100,000 images: 512 MB each)


@dataclass(frozen=True)
class SimilarQuery:
    """A dataset image (`path`) or an upload (`data`, its `name`, the class the model gave it as `label`)."""

    name: str
    path: str | None = None
    data: bytes | None = None
    label: str | None = None


def similarity_index(index: DatasetIndex):
    """The dataset's SimilarityIndex: by the current run's model or by the ImageNet embeddings, as picked in
    the dialog (by the model when the run has one, unless the user picks ImageNet)."""
    from imgclf_app.model_state import model_file_stamp, predictor_or_report
    from imgclf_core.inspection.similar import IMAGENET_EMBEDDINGS, SimilarityIndex

    run_dir = current_run_dir(index.root)
    if run_dir is not None and RunFolder(run_dir).has_model():
        by_model = f"the model of {run_dir.name}"
        choice = st.radio("Compare by", [by_model, IMAGENET_EMBEDDINGS], horizontal=True, key="similar_by",
                          help="The run's model knows this dataset's look-alikes (a shirt from a pullover); the "
                               "ImageNet embeddings do not depend on its labels, nor on a run.")
        if choice == by_model:
            model = (str(run_dir), model_file_stamp(str(run_dir)))
            kept = kept_for_scan("similarity-run", index, model)
            if kept is not None:
                return kept
            outputs = dataset_predictions_of(index, str(run_dir))
            predictor = predictor_or_report(str(run_dir))
            if outputs is not None and predictor is not None:
                return compute_for_scan(
                    "similarity-run", index, lambda progress: SimilarityIndex.of_run(
                        predictor, index, features=outputs.features, run_name=run_dir.name),
                    "Indexing the model's features", "once per model", depends_on=model, limit=_KEPT_INDEXES)
    return imagenet_similarity_index(index)


def imagenet_similarity_index(index: DatasetIndex):
    """The dataset's SimilarityIndex by the ImageNet embeddings, built once per scan (embedding what the cache
    lacks, with a bar)."""
    from imgclf_core.inspection.similar import SimilarityIndex

    kept = kept_for_scan("similarity", index)
    if kept is not None:
        return kept
    return compute_for_scan("similarity", index, lambda progress: SimilarityIndex.of_dataset(index, progress=progress),
                            "Embedding the dataset's images", "once; cached by content", limit=_KEPT_INDEXES)


def similar_images_ui(index: DatasetIndex, query: SimilarQuery, top: int = SIMILAR_TOP) -> None:
    """The `top` nearest images with their class and distance; a class other than the query's in red."""
    from imgclf_core.inspection.similar import query_similar

    similarity = similarity_index(index)
    try:
        if query.path is not None:
            neighbours, same_as = similarity.nearest_to_path(query.path, top), query.path
        else:
            # A class of another model (ImageNet's) says nothing about this dataset's labels.
            label = query.label if query.label in index.class_names else None
            neighbours, same_as = query_similar(similarity, query.data, top, label)
    except (ImageDecodeError, KeyError) as error:
        st.error(f"{query.name}: {error}")
        return
    if not neighbours:
        st.info("The dataset has no other image to compare with.")
        return
    differing = sum(neighbour.label_differs for neighbour in neighbours)
    about = f"the dataset's copy {same_as}" if same_as and query.path is None else query.name
    try:  # the query itself, small, so the look-alikes below can be compared with it
        st.image(display_array(index.absolute_path(query.path) if query.path is not None else query.data,
                               SIMILAR_SIDE // 2), caption=f"{query.name}" + (f" ({query.label})" if query.label else ""),
                 output_format="PNG")
    except (ImageDecodeError, OSError):
        pass
    st.caption(f"The {len(neighbours)} images nearest to {about} by {similarity.described} "
               "(distance: 1 − cosine similarity, 0 = the same picture)"
               + (f"; :red[{differing} carry a class other than {query.label or 'its own'}]: look-alikes under "
                  "another class are where wrong labels hide." if differing else "."))
    for column, neighbour in in_columns(neighbours, SIMILAR_COLUMNS):
        label = f":red[{neighbour.label}]" if neighbour.label_differs else neighbour.label
        try:
            picture = display_array(index.absolute_path(neighbour.path), SIMILAR_SIDE)
        except (ImageDecodeError, OSError):
            column.caption(f"{neighbour.path}: no longer readable")
            continue
        column.image(picture, width="stretch", output_format="PNG")
        column.markdown(f"{label} · {neighbour.distance:.3f}  \n`{Path(neighbour.path).name}`")


def more_like_this_button(query: SimilarQuery, key: str, container=st) -> None:
    """A button that opens the More-like-this dialog for `query` (see similar_dialog_if_asked)."""
    container.button("More like this", key=f"similar:{key}", on_click=_ask, args=(query,),
                     help="The images of the dataset that look most like this one")


def _ask(query: SimilarQuery) -> None:
    st.session_state[SIMILAR_NOW] = query


def similar_dialog_if_asked(index: DatasetIndex | None) -> None:
    """Open the dialog for the query a More-like-this click left (once: the click is used up)."""
    query = st.session_state.pop(SIMILAR_NOW, None)
    if query is not None and index is not None:
        similar_dialog(index, query)


@st.dialog("More like this", width="large")
def similar_dialog(index: DatasetIndex, query: SimilarQuery) -> None:
    similar_images_ui(index, query)
