"""Training: the run folder, the trainer process and what it writes.

The run folder's owner (``run_folder``), the trainer process (``run_process``; its entry point
``python -m imgclf_core.training RUN_DIR``), the runs list (``run_catalog``), a new run's config
(``run_setup``), the trainer (``trainer``) and its epoch loop (``loop``, with its parts in
``loop_parts``, ``loop_policies`` and ``loop_writers``), the head-on-features stage
(``feature_head``, ``feature_head_stage``), evaluation and the data-based recommendation. May
import the root modules, ``imgclf_core.data`` and ``imgclf_core.models``; never inspection or export.
"""
