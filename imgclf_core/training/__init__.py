"""Training: the run folder, the trainer process and what it writes.

The run folder's owner (``runs``), the trainer (``trainer``), the head-on-features stage,
evaluation and the data-based recommendation. May import the root modules, ``imgclf_core.data``
and ``imgclf_core.models``; never inspection or export.
"""
