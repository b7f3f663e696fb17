"""What the test modules share; no test module imports another.

files: PNGs, shape folders, zips, sample copies. runs: trained and hand-written run folders.
pages: AppTest page drivers. browser: Chromium helpers. cli: `imgclf` in a subprocess.
"""
