.PHONY: install test lint fix bench

install:
	python -m pip install -U pip  # dependency groups need pip >= 25.1
	python -m pip install "torch==2.13.0"
	python -m pip install -e ".[all]" --group test --group lint

test:
	pytest

lint:
	ruff check .
	ruff format --check .
	mypy

fix:
	ruff check --fix .
	ruff format .

bench:
	python benchmarks/bench_encoder.py
