"""The tests' shared helpers: runners, harnesses and data writers that the test_*.py files import."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
