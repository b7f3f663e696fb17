"""The error every model builder and model-file reader raises."""


class ModelError(ValueError):
    """A model cannot be built or loaded; the message says which and why."""
