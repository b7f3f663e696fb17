"""Streamlit-only helpers (cached loaders, sidebar widgets). The pages import these; the core never does."""
