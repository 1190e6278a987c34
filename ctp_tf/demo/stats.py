"""Paired comparisons for the demo: per-seed differences, a t-interval, a verdict.

Each comparison pairs, seed by seed, a CtP number with its baseline's (the static guess, the
random encoder, training from scratch) measured on the same data with the same seed. The
verdict comes from the 95% Student-t interval of the mean of the per-seed differences
(CtP minus baseline): "ctp better" when the whole interval is above zero, "baseline better"
when it is below, "undecided" otherwise (and always with fewer than two seeds).

Example:
>>> c = paired_comparison("retrieval top-1", "top1", [0.5, 0.6], [0.4, 0.5], seeds=[0, 1])
>>> c["diff_mean"], c["diff_ci95"], c["verdict"]
(0.1, [0.1, 0.1], 'ctp better')
"""

import math

import numpy as np

VERDICTS = ("ctp better", "baseline better", "undecided")

# Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30 (standard tables, 3 decimals).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df):
  """The 0.975 quantile of Student's t with `df` degrees of freedom (1.96 beyond 30: normal)."""
  df = int(df)
  if df < 1:
    raise ValueError(f"need df >= 1, got {df}")
  try:
    from scipy import stats  # noqa: PLC0415  (exact when scipy is installed)
    return float(stats.t.ppf(0.975, df))
  except ImportError:
    return _T975[df - 1] if df <= len(_T975) else 1.96


def paired_interval(ctp, baseline):
  """(mean, lo, hi) of the per-seed differences ctp - baseline, 95% t-interval.

  With one pair the interval is undefined: (mean, None, None). Zero variance gives lo = hi.
  """
  a = np.asarray(ctp, np.float64)
  b = np.asarray(baseline, np.float64)
  if a.shape != b.shape or a.ndim != 1 or not len(a):
    raise ValueError(f"need two equal-length non-empty lists, got {a.shape} and {b.shape}")
  d = a - b
  mean = float(d.mean())
  if len(d) < 2:
    return mean, None, None
  half = t975(len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
  return mean, mean - half, mean + half


def verdict_of(lo, hi):
  if lo is None or hi is None:
    return "undecided"
  if lo > 0:
    return "ctp better"
  if hi < 0:
    return "baseline better"
  return "undecided"


def paired_comparison(name, metric, ctp, baseline, *, seeds, digits=6):
  """The `results.json` comparison entry (INTERFACES.md): both arms per seed, the mean
  difference, its 95% t-interval, wins (seeds where CtP is strictly higher) and the verdict."""
  ctp = [float(v) for v in ctp]
  baseline = [float(v) for v in baseline]
  mean, lo, hi = paired_interval(ctp, baseline)
  rnd = lambda v: None if v is None else round(v, digits)  # noqa: E731
  return {"name": name, "metric": metric, "ctp": ctp, "baseline": baseline,
          "diff_mean": rnd(mean), "diff_ci95": [rnd(lo), rnd(hi)],
          "wins": int(sum(x > y for x, y in zip(ctp, baseline))), "seeds": [int(s) for s in seeds],
          "verdict": verdict_of(lo, hi)}


def comparisons_table(comparisons):
  """Markdown table of `comparisons` (the report's first table)."""
  fmt = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
  lines = ["| comparison | metric | CtP (mean) | baseline (mean) | CtP - baseline, 95% CI "
           "| CtP wins | verdict |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for c in comparisons:
    lo, hi = c["diff_ci95"]
    lines.append(
        f"| {c['name']} | {c['metric']} | {np.mean(c['ctp']):.3f} | {np.mean(c['baseline']):.3f}"
        f" | {fmt(c['diff_mean'])} [{fmt(lo)}, {fmt(hi)}] | {c['wins']}/{len(c['seeds'])} "
        f"| {c['verdict']} |")
  return "\n".join(lines)
