"""Models: the registry of named builders, EfficientNet-Lite0 and its offline weights, model files.

Builds, saves, loads and embeds with Keras models (``registry``, ``efficientnet_lite``,
``torch_weights``, ``model_io``, the features cache in ``features``), runs them through one
compiled forward pass (``forward``) and says what went wrong with ``errors.ModelError``. May import
the root modules and ``imgclf_core.data``; never training, inspection or export.
"""
