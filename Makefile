# Two commands do all setup: `make app` and `make test` (each creates and reuses .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: app test test-fast test-app test-e2e bench bench-refresh bench-pipeline bench-app-start bench-memory bench-training bench-predict bench-audit screenshots sample-data clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $(STAMP)

app: $(STAMP)  ## start the app on the shipped sample data
	$(BIN)/streamlit run app.py

# Two workers: while one waits on Chromium, a subprocess or a trainer, the other computes (the whole suite:
# 9.3 min instead of 13.6 on 2 cores). worksteal hands out single tests and lets an idle worker take
# queued ones, so the long browser journeys do not pile up on one worker.
TEST_WORKERS ?= -n 2 --dist worksteal

test: $(STAMP)  ## every tier (unit, app, integration, e2e, robustness): what CI runs, under 10 min
	$(BIN)/python -m pytest $(TEST_WORKERS)

test-fast: $(STAMP)  ## the unit tier (tests/unit): under a minute, after every change
	$(BIN)/python -m pytest tests/unit

test-app: $(STAMP)  ## the pages under Streamlit's AppTest (tests/app)
	$(BIN)/python -m pytest $(TEST_WORKERS) tests/app

test-e2e: $(STAMP)  ## the browser journeys: Debian's Chromium against `streamlit run` (tests/e2e)
	$(BIN)/python -m pytest $(TEST_WORKERS) tests/e2e

bench: $(STAMP)  ## every benchmark, the ~20-min training comparison included -> docs/BENCHMARKS.md (~1 h on 2 cores)
	$(BIN)/python bench/run_all.py --training full

bench-refresh: $(STAMP)  ## every benchmark but training (kept from docs/benchmarks/results.json) -> docs/BENCHMARKS.md (~30 min)
	$(BIN)/python bench/run_all.py --training reuse

bench-pipeline: $(STAMP)  ## pipeline and scan benchmarks only (needs the dataset-fashion-mnist Debian package)
	$(BIN)/python bench/bench_pipeline.py

bench-app-start: $(STAMP)  ## app cold start to first paint in Chromium (needs Debian's chromium)
	$(BIN)/python bench/bench_app_start.py

bench-memory: $(STAMP)  ## server RSS over 500 upload+predict round trips in one browser session (Debian's chromium; ~25 min)
	$(BIN)/python bench/bench_memory.py --json bench/out/bench_memory.json

bench-training: $(STAMP)  ## the seeds' two recipes vs ours to test accuracy on full Fashion-MNIST, and GFLOP/s (~20 min)
	test -d /tmp/fmnist-tree/train || $(BIN)/imgclf fashion-mnist /tmp/fmnist-tree
	$(BIN)/python bench/bench_training.py --json bench/out/bench_training.json

bench-predict: $(STAMP)  ## warm single-image predict + Grad-CAM latency vs the keras-io recipe
	$(BIN)/python bench/bench_predict.py

bench-audit: $(STAMP)  ## plant 5% label errors in a copy of the sample data; precision/recall of the audit
	$(BIN)/python bench/bench_audit.py --json bench/out/bench_audit.json

screenshots: $(STAMP)  ## the README's Home screenshot (the other pages': the browser tests) (needs Debian's chromium)
	$(BIN)/python scripts/screenshot_pages.py

sample-data: $(STAMP)  ## rebuild sample_data/ from Debian's dataset-fashion-mnist
	$(BIN)/imgclf fashion-mnist sample_data --sample 200 --inbox 60

clean:
	rm -rf $(VENV) .pytest_cache
