# SHER — make run (the whole desk on SQLite) and make test (everything, SQLite + PostgreSQL).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck worker bot app migrate seed clean bench

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)  ## the desk: migrate, seed demo household once, worker + app on :8501
	$(PY) -m jobs.launcher

test: $(STAMP)  ## every test, SQLite and a throwaway PostgreSQL, plus lint and types
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -rs -q -n auto --maxprocesses=4

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy

worker: $(STAMP)
	$(PY) -m jobs.worker

bot: $(STAMP)  ## the Telegram bot process (commands; delivers alerts when ALERT_CHANNEL=telegram)
	$(PY) -m jobs.telegram_bot

app: $(STAMP)
	$(PY) -m streamlit run app.py --server.address 127.0.0.1 --server.port 8501

migrate: $(STAMP)
	$(PY) -m db.migrate

seed: $(STAMP)
	$(PY) -m core.seed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)  ## performance figures (each script prints one JSON object on its last line)
	$(PY) bench/marketdata.py
	$(PY) bench/orders.py
	$(PY) bench/signals.py --walk-forward-from 2022-10-01
	$(PY) bench/risk.py
	$(PY) bench/worker.py
	$(PY) bench/telegram.py
