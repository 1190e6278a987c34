"""The demo: the whole CtP protocol on a small embedded dataset, a user of the library.

Modules: `data` (renders the demo videos), `assets` (makes, converts and caches them; the one
hook the scripts call when no --data_dir is given), `splits` (per-seed validation / few-label
splits), `tracking` (zero-shot tracking of the videos' own object), `stats` (paired
comparisons over seeds), `run` (every stage, results.json and report.md; `scripts/demo.py`).
Nothing else in `ctp_tf` imports this package.
"""
