"""imgclf: the Streamlit entry point. Navigation only; each page lives in app_pages/ and draws the shared sidebar."""

import streamlit as st

from imgclf_app.errors import run_page_reporting_errors

st.set_page_config(page_title="imgclf", page_icon="🧵", layout="wide")

navigation = st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/dataset.py", title="Dataset", icon=":material/photo_library:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/monitoring:"),
        st.Page("app_pages/predict.py", title="Predict", icon=":material/image_search:"),
        st.Page("app_pages/mistakes.py", title="Mistakes", icon=":material/troubleshoot:"),
        st.Page("app_pages/label.py", title="Label", icon=":material/label:"),
        st.Page("app_pages/audit.py", title="Audit", icon=":material/fact_check:"),
    ]
)
run_page_reporting_errors(navigation)
