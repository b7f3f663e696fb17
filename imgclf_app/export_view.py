"""The Train page's Export section: export a finished run with a parity check, show the figures, offer a zip."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import streamlit as st

# imgclf_core.export.exporter is imported inside the functions: it loads numpy, and the Train page imports this
# module before it draws its title.
FORMAT_LABELS = {
    "keras": "Keras (.keras)", "savedmodel": "TensorFlow SavedModel", "tflite": "TensorFlow Lite (.tflite)",
}


def export_ui(run_dir: Path) -> None:
    """Pick a format, export into RUN_DIR/exports/<format>, show its parity figures and a zip download."""
    from imgclf_core.export.exporter import FORMATS, default_export_dir

    st.subheader("Export")
    columns = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    format = columns[0].selectbox("Format", FORMATS, format_func=FORMAT_LABELS.get, key="export_format")
    float16 = columns[1].checkbox(
        "Also a float16 TFLite model", key="export_float16", disabled=format != "tflite",
        help="Half the size; its agreement with the Keras model is measured and shown, not required.",
    )
    int8 = columns[2].checkbox(
        "Also an int8 TFLite model", key="export_int8", disabled=format != "tflite",
        help="About a quarter of the size: weights and activations in 8-bit integers, their ranges set on "
             "200 training images; its agreement with the Keras model is measured and shown, not required.",
    )
    out_dir = default_export_dir(run_dir, format)
    if columns[3].button("Export", type="primary", key="export_start"):
        run_export_ui(run_dir, format, out_dir, float16=float16 and format == "tflite", int8=int8 and format == "tflite")
    document = read_parity_document(out_dir)
    if document is not None:
        parity_ui(document, out_dir)
        archive = export_zip(str(out_dir), f"{run_dir.name}-{format}", _stamp(out_dir))
        st.download_button(
            f"Download the {format} export (.zip)", archive,
            file_name=f"{run_dir.name}-{format}.zip", mime="application/zip",
            key=f"export_download:{format}", on_click="ignore",
        )


def run_export_ui(run_dir: Path, format: str, out_dir: Path, float16: bool, int8: bool = False) -> None:
    """Run one export, its progress in a status box; a failure is one error line (the old export stays)."""
    from imgclf_core.export.exporter import export_run

    with st.status(f"Exporting {FORMAT_LABELS[format]}…", expanded=False) as status:
        try:
            export_run(run_dir, format, out_dir, float16=float16, int8=int8, progress=status.write)
        except (ValueError, OSError) as error:  # ExportError, ExportParityError, ModelError, RunError, disk errors
            status.update(label="Export failed", state="error")
            st.error(f"Export failed: {error}")
            return
        status.update(label=f"Exported to {out_dir}", state="complete")


def read_parity_document(out_dir: Path) -> dict | None:
    """The parity.json of an export folder, or None when there is no (readable) export there."""
    from imgclf_core.export.exporter import PARITY_FILE_NAME

    try:
        return json.loads((out_dir / PARITY_FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def parity_ui(document: dict, out_dir: Path) -> None:
    """The export's parity figures against the run's Keras model (and the float16 and int8 models', reported)."""
    parity = document["parity"]
    columns = st.columns(4)
    columns[0].metric("Golden images", parity["golden_images"])
    columns[1].metric("Top-1 agreement", f"{parity['top1_matches']}/{parity['golden_images']}")
    columns[2].metric("Max probability difference", _difference(parity["max_probability_difference"]),
                      help=f"Limit {parity['tolerance']:.0e} for this format; top-1 must agree on every image.")
    columns[3].metric("Size", f"{parity['size_bytes'] / 1e6:.2f} MB")
    for key, what in (("float16", "float16 weights"), ("int8", "int8 weights and activations")):
        quantized = document.get(key)
        if quantized:
            st.caption(f"`{quantized['artifact']}` ({quantized['size_bytes'] / 1e6:.2f} MB, {what}): top-1 agrees on "
                       f"{quantized['top1_matches']}/{quantized['golden_images']} golden images, max probability "
                       f"difference {_difference(quantized['max_probability_difference'])} (measured and reported, "
                       "not required).")
    st.caption(f"`{parity['artifact']}` in `{out_dir}`, exported {document['exported_at']} in "
               f"{document['seconds']:.1f} s and checked against the run's Keras model; "
               "with labels.txt, model_card.md and parity.json.")


@st.cache_data(max_entries=2, show_spinner="Packing the export…")
def export_zip(out_dir: str, top_folder: str, stamp: int) -> bytes:
    """The export folder as a zip holding one `top_folder`; cached per export by its parity.json time."""
    folder = Path(out_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top_folder}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def _stamp(out_dir: Path) -> int:
    from imgclf_core.export.exporter import PARITY_FILE_NAME

    return (out_dir / PARITY_FILE_NAME).stat().st_mtime_ns


def _difference(value: float | None) -> str:
    return "not finite" if value is None else f"{value:.1e}"
