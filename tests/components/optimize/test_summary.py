"""The optimizer's numbers where users read them: run summary, HTML report, lineage."""
import html

from components.optimize.summary import headline, summary_of

GATES = {
    "passed": True,
    "parity": {"passed": True, "top1_agreement": 1.0, "max_prob_diff": 2.4e-07},
    "accuracy": {"passed": True, "delta": -0.0018, "original": 0.97, "optimized": 0.9682},
    "speed": {"passed": True, "speedup": {"1": 14.2, "256": 1.4}},
}
RESULT = {"status": "optimized", "engine": "onnxruntime", "precision": "int8", "saved_model": "original", "gates": GATES}
SUMMARY = summary_of(RESULT)


def test_summary_and_headline():
    assert SUMMARY == {"engine": "onnxruntime", "precision": "int8", "parity_top1_agreement": 1.0, "parity_max_prob_diff": 2.4e-07,
                       "accuracy_delta": -0.0018, "speedup_batch1": 14.2, "speedup_batch256": 1.4}
    assert headline(SUMMARY) == ("onnxruntime int8; parity top-1 1.0000, max prob diff 2.4e-07; accuracy delta -0.0018; "
                                 "speedup 14.20x at batch 1, 1.40x at batch 256")
    assert headline(None) == ""
    assert "speedup n/a" in headline(summary_of({"engine": "onnxruntime", "precision": "fp32"}))


def test_run_summary_prints_the_numbers():
    from pipeline.run import format_summary

    s = {"pipeline_name": "digits", "run_id": "r1", "components": [], "metrics": {}, "blessed": True,
         "optimizer": {**RESULT, "summary": SUMMARY}}
    text = format_summary(s)
    assert "  optimizer: optimized" in text and f"    optimized: {headline(SUMMARY)}" in text
    kept = format_summary({**s, "optimizer": {"status": "kept_original", "reason": "no candidate passed", "summary": SUMMARY}})
    assert "optimizer: kept_original (no candidate passed)" in kept and "fastest candidate: onnxruntime int8" in kept


def test_report_section_shows_engine_precision_parity_accuracy_and_speedups():
    from pipeline.report.sections import _optimizer

    page = html.unescape(str(_optimizer({"optimizer": {**RESULT, "summary": SUMMARY}}, ".")))
    for text in ("chosen artifact", "onnxruntime", "int8", "parity: top-1 agreement", "eval accuracy delta", "-0.0018",
                 "speedup at batch 1", "14.2", "speedup at batch 256", "1.4"):
        assert text in page, text
    old = html.unescape(str(_optimizer({"optimizer": {"status": "skipped", "reason": "engine none"}}, ".")))
    assert "engine none" in old and "chosen artifact" not in old  # records without a summary render as before


def test_lineage_rows_show_the_numbers():
    from pipeline.lineage import _optimizer_rows

    rows = dict(_optimizer_rows({"outcome": {**RESULT, "summary": SUMMARY}, "optimized_model_uri": "/m/7"}))
    assert rows["status"] == "optimized" and rows["engine"] == "onnxruntime" and rows["precision"] == "int8"
    assert rows["accuracy delta"] == "-0.0018" and rows["speedup batch1"] == "14.2000" and rows["speedup batch256"] == "1.4000"
    assert rows["parity max diff"] == "2.4e-07" and rows["parity top-1"] == "1" and rows["model"] == "/m/7"
