"""The optimizer's headline numbers, for the run summary, the HTML report and lineage.

Pure Python (no TensorFlow), so report and lineage code can import it cheaply.

    summary = summary_of(result)   # from a manifest or an optimizer result with `gates`
    headline(summary)              # "onnxruntime fp32; parity top-1 1.0000, max prob diff 2.4e-07;
                                   #  accuracy delta +0.0000; speedup 14.20x at batch 1, 1.40x at batch 256"
"""
from __future__ import annotations

from typing import Mapping


def summary_of(result: Mapping) -> dict:
    """engine, precision, parity, accuracy delta and speedups of a manifest or optimizer result."""
    gates = result.get("gates") or {}
    parity, accuracy, speed = gates.get("parity") or {}, gates.get("accuracy") or {}, gates.get("speed") or {}
    summary = {"engine": result.get("engine"), "precision": str(result.get("precision") or "").lower() or None,
               "parity_top1_agreement": parity.get("top1_agreement"), "parity_max_prob_diff": parity.get("max_prob_diff"),
               "accuracy_delta": accuracy.get("delta")}
    for batch, up in (speed.get("speedup") or {}).items():
        summary[f"speedup_batch{batch}"] = up
    return summary


def _num(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def headline(summary: Mapping | None) -> str:
    """One line of the summary's numbers; '' for None."""
    if not summary:
        return ""
    ups = [(k[len("speedup_batch"):], v) for k, v in summary.items() if k.startswith("speedup_batch")]
    return (f"{summary.get('engine')} {summary.get('precision')}; "
            f"parity top-1 {_num(summary.get('parity_top1_agreement'), '.4f')}, max prob diff {_num(summary.get('parity_max_prob_diff'), '.2g')}; "
            f"accuracy delta {_num(summary.get('accuracy_delta'), '+.4f')}; "
            "speedup " + (", ".join(f"{_num(v, '.2f')}x at batch {k}" for k, v in sorted(ups, key=lambda kv: int(kv[0]))) or "n/a"))
