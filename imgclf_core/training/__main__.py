"""`python -m imgclf_core.training RUN_DIR`: the trainer process that `run_process.launch_trainer` starts."""

import sys

from imgclf_core.tf_quiet import import_tensorflow_quietly

if __name__ == "__main__":
    import_tensorflow_quietly()  # before the trainer imports it, so its start-up lines stay out of train.log
    from imgclf_core.training.trainer import main

    sys.exit(main())
