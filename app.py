"""imgclf: the Streamlit entry point. Navigation only; each page lives in pages/ and draws the shared sidebar."""

import streamlit as st

st.set_page_config(page_title="imgclf", page_icon="🧵", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/dataset.py", title="Dataset", icon="🗂️"),
        st.Page("pages/train.py", title="Train", icon="📈"),
    ]
)
navigation.run()
