"""A model file brought from elsewhere: a warning that models are programs, a size cap, safe-mode loading."""

from __future__ import annotations

import hashlib

import streamlit as st

from imgclf_core.fileio import atomic_write_bytes, user_data_dir

MODEL_UPLOAD_MAX_MB = 100
MODEL_UPLOAD_MAX_BYTES = MODEL_UPLOAD_MAX_MB * 1024 * 1024
MODELS_ARE_PROGRAMS = (
    "A model file is a program: load only models from people you trust. imgclf opens it in Keras' safe "
    f"mode, refuses Lambda and custom layers (code from outside Keras) and files over {MODEL_UPLOAD_MAX_MB} MB."
)


def uploaded_model_ui():
    """(Predictor, cache key) of an uploaded .keras file (+ optional labels.txt), or (None, None)."""
    st.warning(MODELS_ARE_PROGRAMS, icon=":material/security:")
    left, right = st.columns(2)
    model_file = left.file_uploader("Model file (.keras)", type=["keras"], key="predict_model_file",
                                    max_upload_size=MODEL_UPLOAD_MAX_MB)
    labels_file = right.file_uploader("Class names (labels.txt, one per line; optional)", type=["txt"],
                                      key="predict_model_labels")
    if model_file is None:
        st.info("Upload a .keras model (for example one exported from a run) to classify with it.")
        return None, None
    if model_file.size > MODEL_UPLOAD_MAX_BYTES:
        st.error(f"{model_file.name}: too large ({model_file.size:,} bytes, limit {MODEL_UPLOAD_MAX_BYTES:,})")
        return None, None
    data = model_file.getvalue()
    labels = labels_file.getvalue().decode("utf-8", errors="replace") if labels_file is not None else ""
    digest = hashlib.sha256(data).hexdigest()
    try:
        return _uploaded_predictor(digest, data, labels), f"uploaded:{digest}:{hash(labels)}"
    except ValueError as error:  # ModelError is a ValueError: corrupt, refused, mis-sized
        st.error(f"{model_file.name}: {error}")
        return None, None


@st.cache_resource(max_entries=2, show_spinner="Loading the uploaded model (safe mode)…")
def _uploaded_predictor(digest: str, _data: bytes, labels: str):
    """Keyed by the file's SHA-256 and the class names (the bytes themselves are not hashed again)."""
    from imgclf_core.inspection.predict import Predictor

    path = user_data_dir() / "uploaded-models" / f"{digest}.keras"
    if not path.exists():
        atomic_write_bytes(path, _data)
    class_names = [line.strip() for line in labels.splitlines() if line.strip()]
    return Predictor.from_model_file(path, class_names or None, max_bytes=MODEL_UPLOAD_MAX_BYTES)
