"""Predict: upload photos (or take one), see the top classes and where the model looked (Grad-CAM)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from imgclf_app.charts import top_k_chart
from imgclf_app.current_run import current_run_dir
from imgclf_app.dataset_loaders import scan_or_report
from imgclf_app.model_state import (
    IMAGENET, IMAGENET_LABEL, explain_bytes, judge_bytes, model_cache_key, predictor_or_report,
)
from imgclf_app.model_upload import uploaded_model_ui
from imgclf_app.session_keys import PREDICT_MODEL, SIMILAR_NOW
from imgclf_app.sidebar import sidebar_ui
from imgclf_app.similar_view import SimilarQuery, more_like_this_button, similar_dialog_if_asked
from imgclf_app.views import accuracy_text
from imgclf_core.training.run_catalog import default_runs_root, runs_with_models, summarize_run
from imgclf_core.data.images import DEFAULT_MAX_BYTES, IMAGE_EXTENSIONS, ImageDecodeError
from imgclf_core.inspection.overlay import display_image, overlay_heatmap

COLORMAPS = ("jet", "turbo", "inferno", "viridis")
UPLOADED_MODEL = "uploaded model"
IMAGE_TYPES = [extension.lstrip(".") for extension in IMAGE_EXTENSIONS]


def model_choice_ui(folder: Path | None) -> str:
    """A run with a saved model, or the built-in ImageNet model; default: the sidebar's run if it has one."""
    run_dirs = runs_with_models(default_runs_root())
    options = [IMAGENET, *map(str, run_dirs), UPLOADED_MODEL]
    current = current_run_dir(folder)
    if PREDICT_MODEL not in st.session_state or st.session_state[PREDICT_MODEL] not in options:
        st.session_state[PREDICT_MODEL] = str(current) if current is not None and str(current) in options else IMAGENET

    def label(option: str) -> str:
        if option == IMAGENET:
            return IMAGENET_LABEL
        if option == UPLOADED_MODEL:
            return "Upload a model file (.keras)…"
        summary = summarize_run(option)
        figures = [f"{name} accuracy {accuracy_text(summary[key])}"
                   for name, key in (("validation", "val_accuracy"), ("test", "test_accuracy"))
                   if summary[key] is not None]
        return f"Run {summary['run']} ({', '.join([summary['state'], *figures])})"

    return st.selectbox("Model", options, key=PREDICT_MODEL, format_func=label)


def uploads_ui() -> list:
    files = st.file_uploader("Images to classify", type=IMAGE_TYPES, accept_multiple_files=True, key="predict_files")
    uploads = list(files or [])
    if st.toggle("Take a photo with the camera", key="predict_camera_on"):
        photo = st.camera_input("Camera", key="predict_camera")
        if photo is not None:
            uploads.append(photo)
    return uploads


def display_options_ui() -> tuple[int, float, str, bool]:
    columns = st.columns(3)
    top_k = columns[0].slider("Top classes shown", 1, 10, 5, key="predict_top_k")
    opacity = columns[1].slider("Grad-CAM opacity", 0.0, 1.0, 0.45, 0.05, key="predict_opacity")
    colormap = columns[2].selectbox("Colormap", COLORMAPS, key="predict_colormap")
    flip = st.checkbox("Average each image with its mirror image (test-time flip)", key="predict_flip",
                       help="The top classes come from the mean of the image's and its mirror image's "
                            "probabilities (twice the compute); Grad-CAM still explains the image as it is.")
    return top_k, opacity, colormap, flip


def classify(predictor, model_key: str, upload, top_k: int, flip: bool = False) -> dict:
    """One upload -> {"name", "file_id", "data", "heatmap", "top_k"} or {"name", "error"}; never raises for bad files."""
    name = upload.name
    if upload.size > DEFAULT_MAX_BYTES:
        return {"name": name, "error": f"file too large ({upload.size:,} bytes, limit {DEFAULT_MAX_BYTES:,})"}
    data = upload.getvalue()
    try:
        probabilities, heatmap = explain_bytes(predictor, model_key, data, None)
    except ImageDecodeError as error:
        return {"name": name, "error": str(error)}
    flipped, unlike = judge_bytes(predictor, model_key, data, flip)
    if flipped is not None:
        probabilities = flipped
    return {"name": name, "file_id": upload.file_id, "data": data, "heatmap": heatmap,
            "top_k": predictor.top_k(probabilities, top_k), "unfamiliar": unlike}


def batch_table_ui(results: list[dict]) -> None:
    table = pd.DataFrame([
        {"image": result["name"],
         "predicted": result["top_k"][0][0] if "top_k" in result else None,
         "confidence": result["top_k"][0][1] if "top_k" in result else None,
         "unlike the training data": bool((result.get("unfamiliar") or {}).get("flagged")),
         "error": result.get("error", "")}
        for result in results
    ])
    if not any(result.get("unfamiliar") for result in results):  # a model without an unfamiliar-image verdict
        table = table.drop(columns=["unlike the training data"])
    # Narrow figures, wide error text: a reason ("not an image: ...") is read whole, not cut off.
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "image": st.column_config.TextColumn("image", width="medium"),
        "predicted": st.column_config.TextColumn("predicted", width="small"),
        "confidence": st.column_config.ProgressColumn("confidence", format="percent", min_value=0.0, max_value=1.0,
                                                      width="small"),
        "error": st.column_config.TextColumn("error", width="large"),
    })
    st.download_button("Download as CSV", table.to_csv(index=False), "predictions.csv", "text/csv",
                       key="predict_csv")


def result_ui(predictor, model_key: str, result: dict, opacity: float, colormap: str,
              dataset_folder: Path | None = None) -> None:
    """One upload: its top classes, Grad-CAM, and (with a dataset folder open) its look-alikes there."""
    with st.container(border=True):
        st.markdown(f"**{result['name']}**")
        if "error" in result:
            st.error(f"{result['name']}: {result['error']}")
            return
        labels = [label for label, _ in result["top_k"]]
        unlike = result.get("unfamiliar")
        if unlike and unlike["flagged"]:
            st.warning(f"Unlike the training data: this image's features are far from every class of "
                       f"the training images (distance {unlike['score']:.2f}, while 95% of the validation images "
                       f"score at most {unlike['threshold']:.2f}). The model has never seen anything like it, so "
                       f"'{labels[0]}' may mean nothing.", icon="⚠️")
        left, middle, right = st.columns([2, 2, 3])
        explained = right.selectbox("Grad-CAM explains", labels, key=f"predict_class:{result['file_id']}")
        heatmap = result["heatmap"]
        if explained != labels[0]:
            _, heatmap = explain_bytes(predictor, model_key, result["data"], predictor.class_names.index(explained))
        photo = display_image(result["data"])
        # PNG: Streamlit would send an array as JPEG, smearing a small image's enlarged pixels.
        left.image(photo, caption="uploaded", width="stretch", output_format="PNG")
        middle.image(overlay_heatmap(photo, heatmap, opacity=opacity, colormap=colormap),
                     caption=f"where the model looked for '{explained}'", width="stretch", output_format="PNG")
        right.altair_chart(top_k_chart(result["top_k"]), width="stretch")
        if dataset_folder is not None:
            more_like_this_button(SimilarQuery(result["name"], data=result["data"], label=labels[0]),
                                  f"predict:{result['file_id']}", right)


folder = sidebar_ui()
st.title("Predict")
source = model_choice_ui(folder)
if source == UPLOADED_MODEL:
    predictor, key = uploaded_model_ui()
else:
    predictor, key = predictor_or_report(source), model_cache_key(source)
if predictor is not None:
    uploads = uploads_ui()
    if not uploads:
        st.info("Upload one or more images (PNG, JPEG, …) to see what the model thinks and where it looked.")
    else:
        top_classes, overlay_opacity, overlay_colormap, flip_average = display_options_ui()
        with st.spinner(f"Classifying {len(uploads)} image(s)…"):
            classified = [classify(predictor, key, upload, top_classes, flip_average) for upload in uploads]
        batch_table_ui(classified)
        for item in classified:
            result_ui(predictor, key, item, overlay_opacity, overlay_colormap, folder)
        if folder is not None and st.session_state.get(SIMILAR_NOW) is not None:
            similar_dialog_if_asked(scan_or_report(folder))
