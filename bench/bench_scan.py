"""Cold and warm scans of a folder of small files: one thread against one process per core.

    .venv/bin/python bench/bench_scan.py DATA_DIR [--repeats 2]

Each scan ignores the scan cache (`use_cache=False`), so every file is read, checked and hashed. "Cold"
drops the OS page cache first (`echo 1 > /proc/sys/vm/drop_caches`, as root; without root the cold rows
are skipped): the files then come from the disk, as after a reboot or for a folder not read lately.
"One thread" is the scan as it ran before processes (PROCESS_SCAN_MIN_FILES raised out of reach), with
its page-cache hint thread.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imgclf_core.data import dataset  # noqa: E402


def drop_page_cache() -> bool:
    if os.geteuid() != 0:
        return False
    subprocess.run("sync; echo 1 > /proc/sys/vm/drop_caches", shell=True, check=True)
    return True


def scan_seconds(root: str, processes: bool) -> tuple[float, int]:
    dataset.PROCESS_SCAN_MIN_FILES = 5_000 if processes else 10**12
    started = time.perf_counter()
    index = dataset.scan_dataset(root, use_cache=False)
    return time.perf_counter() - started, len(index.records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"scan of {args.data_dir} ({os.cpu_count()} CPUs), every file read, checked and hashed:")
    for cold in (True, False):
        if cold and not drop_page_cache():
            print("  cold rows skipped: dropping the page cache needs root")
            continue
        for _ in range(args.repeats):
            for processes in (False, True):
                if cold:
                    drop_page_cache()
                seconds, images = scan_seconds(args.data_dir, processes)
                print(f"  {'cold (page cache dropped)' if cold else 'page cache warm':<26} "
                      f"{'one process per core' if processes else 'one thread':<21} {seconds:6.2f} s  {images:,} images",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
