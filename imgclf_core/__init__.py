"""imgclf core: everything that is not drawing. Never imports streamlit."""

import os

# TensorFlow's oneDNN kernels are off by default in the TF 2.21 wheel here; on a 2-core x86 CPU
# they train our CNNs ~1.5x faster (small_cnn at 28 px: 349 -> 520 images/s). It must be set
# before TensorFlow is imported, so it lives here; a user's own TF_ENABLE_ONEDNN_OPTS wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
