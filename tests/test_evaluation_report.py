"""report.json, tradeoff.png and per_class.md; the paper's Table 1 copied exactly."""

import json

import numpy as np
import pytest

from privacy_anon.errors import InputError
from privacy_anon.evaluation.report import (
    PAPER_DALY_TABLE1,
    merge_results,
    paper_table1,
    write_report,
)


def _results():
    faces = {
        "none": {"verification_accuracy": 0.99, "verification_std": 0.004, "reid_accuracy": 0.99,
                 "reid_std": 0.005, "no_face_modified": 3, "recognizer": "dlib"},
        "blur8": {"verification_accuracy": 0.62, "verification_std": 0.02, "reid_accuracy": 0.55,
                  "reid_std": 0.03, "no_face_modified": 400, "recognizer": "dlib"},
        "mask": {"verification_accuracy": 0.5, "verification_std": 0.0, "reid_accuracy": 0.5,
                 "reid_std": 0.0, "no_face_modified": 1000, "recognizer": "dlib"},
    }
    actions = {
        m: {"frame_map": {"per_class": {"drink": a, "phone": b, "photo": None},
                          "mean": (a + b) / 2, "num_gt": {"drink": 3, "phone": 2, "photo": 0}}}
        for m, (a, b) in {"none": (0.6, 0.8), "blur8": (0.3, np.float64(0.5)), "mask": (0.2, 0.4)}.items()
    }
    return merge_results(faces, actions)


def test_paper_table1_rows_are_consistent():
    # the mAP column is the mean of the ten class APs in every row (guards the transcription)
    for label, (method, aps, m_ap) in PAPER_DALY_TABLE1.items():
        assert len(aps) == 10, label
        assert np.mean(aps) == pytest.approx(m_ap, abs=0.006), label
    assert {v[0] for v in PAPER_DALY_TABLE1.values()} >= {"none", "blur8", "mask", "edge", "learned"}


def test_write_report_writes_the_three_files(tmp_path):
    paths = write_report(_results(), tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["methods"]["none"]["verification_accuracy"] == 0.99
    assert report["methods"]["blur8"]["reid_accuracy"] == 0.55
    assert report["methods"]["blur8"]["frame_map"]["mean"] == pytest.approx(0.4)
    assert report["methods"]["none"]["frame_map"]["per_class"]["photo"] is None
    # the reference rows are the table, row for row (not a second copy of its numbers)
    rows = report["paper_reference"]["rows"]
    assert set(rows) == set(PAPER_DALY_TABLE1)
    assert all(rows[label]["mAP"] == m_ap for label, (_, _, m_ap) in PAPER_DALY_TABLE1.items())
    png = (tmp_path / "out" / "tradeoff.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    md = (tmp_path / "out" / "per_class.md").read_text()
    assert "| Method | drink | phone | photo | mAP |" in md
    assert "| blur8 | 30.00 | 50.00 | – | 40.00 |" in md
    assert "| paper (DALY): Un-anonymized | 92.30 | 51.26 | 76.73" in md
    assert "| mask | 50.00 ± 0.00 | 50.00 | 50.00 ± 0.00 | 1000 |" in md
    assert set(paths) == {"report.json", "tradeoff.png", "per_class.md"}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], "temp files left"


def test_report_without_actions_or_paper(tmp_path):
    faces = {m: {k: v for k, v in r.items() if k != "frame_map"} for m, r in _results().items()}
    write_report(faces, tmp_path, paper_reference=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert "paper_reference" not in report
    md = (tmp_path / "per_class.md").read_text()
    assert "Action detection" not in md and "paper (DALY)" not in md and "re-id" in md
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000


def test_empty_or_meaningless_results_are_errors(tmp_path):
    with pytest.raises(InputError, match="empty"):
        write_report({}, tmp_path)
    with pytest.raises(InputError, match="method 'blur8' have neither"):
        write_report({"blur8": {"speed": 3}}, tmp_path)


def test_paper_table1_json_is_labelled():
    ref = paper_table1()
    assert "Table 1" in ref["source"] and "DALY" in ref["source"]
    assert ref["rows"]["Blur(8x8)"]["per_class"]["Drink"] == 6.60
