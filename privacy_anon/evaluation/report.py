"""The evaluation report: report.json, tradeoff.png (paper Fig. 4) and per_class.md (Table 1).

`results` is {method name: dict} merging `evaluate_faces` (verification_accuracy,
reid_accuracy, ...) and `evaluate_actions` (frame_map) output, e.g. through
`merge_results(faces, actions)`. Accuracies and APs are fractions in [0, 1] in the JSON;
the plot and the tables show percentages, like the paper.

The paper's own DALY numbers (Table 1: per-class AP and mAP, in %) can be drawn beside
ours as reference rows, always labelled as the paper's. The paper's text gives no face
verification error per method (Fig. 4 only plots it), so on the trade-off plot the paper's
methods appear as horizontal mAP lines, not points.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from privacy_anon.errors import InputError
from privacy_anon.io_utils import atomic_path, atomic_write_json, atomic_write_text

# Table 1 of Ren et al. (ECCV 2018): action detection AP (%) on DALY, copied from the paper.
PAPER_DALY_CLASSES = ("Lip", "Brush", "Floor", "Window", "Drink", "Fold", "Iron", "Phone",
                      "Harmonica", "Photo")
PAPER_DALY_CLASS_NAMES = ("applying make up on lips", "brushing teeth", "cleaning floor",
                          "cleaning windows", "drinking", "folding textile", "ironing",
                          "phoning", "playing harmonica", "taking photos or videos")
# row label in the paper -> (our method name, 10 per-class APs, mAP)
PAPER_DALY_TABLE1 = {
    "Un-anonymized": ("none", (92.30, 51.26, 76.73, 27.87, 31.23, 32.67, 75.30, 51.50, 73.91, 55.74), 56.85),
    "Blur(8x8)": ("blur8", (84.31, 17.87, 79.39, 27.77, 6.60, 28.68, 71.69, 28.40, 31.13, 48.09), 42.39),
    "Blur(16x16)": ("blur16", (82.07, 32.40, 79.53, 32.14, 10.74, 31.35, 74.91, 36.97, 48.37, 52.51), 48.10),
    "Blur(24x24)": ("blur24", (92.08, 39.84, 79.93, 31.77, 15.23, 34.96, 74.65, 46.33, 51.78, 53.09), 51.97),
    "Noise(σ²=0.1)": ("noise0.1", (87.71, 31.37, 78.41, 31.87, 12.41, 34.80, 76.50, 42.37, 50.14, 53.48), 49.91),
    "Noise(σ²=0.3)": ("noise0.3", (87.64, 24.98, 78.59, 32.68, 8.34, 35.33, 74.96, 40.12, 36.61, 45.42), 46.47),
    "Noise(σ²=0.5)": ("noise0.5", (83.63, 21.45, 81.32, 29.59, 7.43, 29.08, 77.97, 33.93, 27.35, 46.35), 43.81),
    "Masked": ("mask", (67.06, 15.19, 78.86, 26.58, 6.59, 25.53, 72.95, 27.79, 21.32, 46.76), 38.86),
    "Edge": ("edge", (80.30, 29.46, 78.02, 30.51, 10.31, 32.64, 79.15, 35.15, 54.69, 49.62), 47.99),
    "Super-Pixel": ("superpixel", (79.47, 26.09, 80.82, 32.22, 11.46, 35.29, 77.70, 30.30, 42.18, 53.68), 46.92),
    "Ours": ("learned", (89.20, 33.08, 77.12, 32.56, 22.93, 33.86, 77.07, 46.52, 55.32, 55.54), 52.32),
}
PAPER_LABEL = "paper (DALY)"


def merge_results(*parts: dict) -> dict:
    """{method: {...}} dicts (faces, actions) merged per method."""
    merged: dict = {}
    for part in parts:
        for method, values in (part or {}).items():
            merged.setdefault(method, {}).update(values)
    return merged


def paper_table1() -> dict:
    """The paper's Table 1 as a JSON-ready dict (AP in %, DALY)."""
    return {
        "source": "Ren, Lee, Ryoo, ECCV 2018, Table 1: action detection AP (%) on DALY",
        "classes": dict(zip(PAPER_DALY_CLASSES, PAPER_DALY_CLASS_NAMES)),
        "rows": {label: {"method": method, "per_class": dict(zip(PAPER_DALY_CLASSES, aps)),
                         "mAP": m}
                 for label, (method, aps, m) in PAPER_DALY_TABLE1.items()},
    }


def _pct(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100.0 * value:.{digits}f}"


def _mean_std(mean, std) -> str:
    return _pct(mean) if std is None or mean is None else f"{_pct(mean)} ± {_pct(std)}"


def _json_ready(obj):
    """NaN / infinity -> None, numpy scalars -> Python numbers, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist"):
        return _json_ready(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _has_actions(values: dict) -> bool:
    fm = values.get("frame_map")
    return isinstance(fm, dict) and fm.get("mean") is not None


def _per_class_md(results: dict, with_paper: bool) -> str:
    lines = ["# Evaluation", ""]
    action_methods = [m for m, v in results.items() if _has_actions(v)]
    if action_methods:
        classes = list(results[action_methods[0]]["frame_map"]["per_class"])
        lines += ["## Action detection: frame AP@0.5 (%) per class", "",
                  "| Method | " + " | ".join(classes) + " | mAP |",
                  "|---|" + "---:|" * (len(classes) + 1)]
        for m in action_methods:
            fm = results[m]["frame_map"]
            lines.append(f"| {m} | " + " | ".join(_pct(fm["per_class"].get(c)) for c in classes)
                         + f" | {_pct(fm['mean'])} |")
        lines.append("")
    face_methods = [m for m, v in results.items() if "verification_accuracy" in v]
    if face_methods:
        recognizers = sorted({str(results[m]["recognizer"]) for m in face_methods
                              if results[m].get("recognizer")})
        by = f"{', '.join(recognizers)}; " if recognizers else ""
        lines += [f"## Face verification ({by}k-fold, mean ± std, %)", "",
                  "Verification: both images modified (the paper's protocol). Re-identification: "
                  "original first image (gallery) vs modified second image (probe). 50% is chance.",
                  "", "| Method | verification acc. | verification error | re-id acc. | "
                  "no face found (modified) |", "|---|---:|---:|---:|---:|"]
        for m in face_methods:
            v = results[m]
            lines.append(f"| {m} | {_mean_std(v['verification_accuracy'], v.get('verification_std'))}"
                         f" | {_pct(v.get('verification_error', 1 - v['verification_accuracy']))}"
                         f" | {_mean_std(v.get('reid_accuracy'), v.get('reid_std'))}"
                         f" | {v.get('no_face_modified', '–')} |")
        lines.append("")
    if with_paper:
        lines += [f"## Reference: {PAPER_LABEL}, the paper's Table 1 (AP %, not measured here)", "",
                  "| Method (paper) | " + " | ".join(PAPER_DALY_CLASSES) + " | mAP |",
                  "|---|" + "---:|" * (len(PAPER_DALY_CLASSES) + 1)]
        for label, (method, aps, m) in PAPER_DALY_TABLE1.items():
            lines.append(f"| {PAPER_LABEL}: {label} | " + " | ".join(f"{a:.2f}" for a in aps)
                         + f" | {m:.2f} |")
        lines += ["", "Classes: " + "; ".join(f"{s} = {n}" for s, n in
                                               zip(PAPER_DALY_CLASSES, PAPER_DALY_CLASS_NAMES)), ""]
    return "\n".join(lines)


def _plot(results: dict, path: Path, with_paper: bool) -> None:
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(7.5, 5.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    colors = matplotlib.colormaps["tab10"]
    both = [m for m, v in results.items() if _has_actions(v) and "verification_accuracy" in v]
    if both:
        ax.set_xlabel("face verification error (%)  [both images modified]")
        ax.set_ylabel("action detection frame-mAP@0.5 (%)")
        ax.set_title("Privacy vs. utility (cf. paper Fig. 4): top-right is better")
        points = {m: (100 * (1 - results[m]["verification_accuracy"]),
                      100 * results[m]["frame_map"]["mean"]) for m in both}
    else:
        faces = [m for m, v in results.items() if "verification_accuracy" in v]
        ax.set_xlabel("face verification error (%)  [both images modified]")
        ax.set_ylabel("re-identification error (%)  [original vs modified]")
        ax.set_title("Privacy per method (no action results)")
        points = {m: (100 * (1 - results[m]["verification_accuracy"]),
                      100 * (1 - results[m].get("reid_accuracy", math.nan))) for m in faces}
        ax.axhline(50, color="0.7", lw=0.8)
        ax.axvline(50, color="0.7", lw=0.8)
    methods = list(points)
    for i, m in enumerate(methods):
        x, y = points[m]
        marker = "s" if m == "learned" else "o"
        ax.plot([x], [y], marker=marker, ls="none", color=colors(i % 10), ms=8, label=m)
        ax.annotate(m, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
    if both and with_paper:
        drawn = False
        for label, (method, _, m_ap) in PAPER_DALY_TABLE1.items():
            if method in methods:
                i = methods.index(method)
                ax.axhline(m_ap, color=colors(i % 10), ls=":", lw=1.0,
                           label=None if drawn else f"{PAPER_LABEL} mAP (Table 1; error not published)")
                ax.text(1.0, m_ap, f"paper: {label} ", color=colors(i % 10), fontsize=6,
                        ha="right", va="bottom", transform=ax.get_yaxis_transform())
                drawn = True
    if methods:
        ax.legend(fontsize=7, loc="best")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def write_report(results: dict, out_dir: str | os.PathLike, paper_reference: bool = True,
                 run: dict | None = None) -> dict:
    """Writes report.json, tradeoff.png and per_class.md into `out_dir` (atomically).

    Args:
        results: {method name: {...}} with, per method, any of: verification_accuracy,
            reid_accuracy (and their _std), frame_map ({"per_class": {...}, "mean": ...}).
        out_dir: output folder (created).
        paper_reference: add the paper's DALY Table 1 (labelled "paper (DALY)") to the
            JSON, the table and the plot.
        run: optional facts about the run (settings, models, timings), stored under
            "run" in report.json.

    Returns:
        {"report.json": path, "tradeoff.png": path, "per_class.md": path}.
    """
    if not results:
        raise InputError("no results to report: the method list was empty")
    for method, values in results.items():
        if not isinstance(values, dict) or not ("verification_accuracy" in values or "frame_map" in values):
            raise InputError(f"results for method {method!r} have neither verification_accuracy "
                             f"nor frame_map: {values!r:.200}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "methods": _json_ready(results),
        "notes": {
            "verification_accuracy": "k-fold LFW protocol, cosine similarity, both images modified",
            "reid_accuracy": "k-fold, first image original (gallery) vs second modified (probe)",
            "frame_map": "VOC all-point AP per class at IoU 0.5, fractions in [0, 1]",
            "noise": "noise sigma^2 is on pixels scaled to [0, 1]",
        },
    }
    if run:
        report["run"] = _json_ready(run)
    if paper_reference:
        report["paper_reference"] = paper_table1()
    paths = {name: out / name for name in ("report.json", "tradeoff.png", "per_class.md")}
    atomic_write_json(paths["report.json"], report)
    _plot(results, paths["tradeoff.png"], paper_reference)
    atomic_write_text(paths["per_class.md"], _per_class_md(results, paper_reference))
    return {k: str(v) for k, v in paths.items()}


# ----------------------------------------------------------------------------- yardstick

YARDSTICK_NOTES = {
    "reid_accuracy": "dlib, k-fold, original photo (gallery) vs modified photo (probe); 0.5 is chance",
    "verification_accuracy": "dlib, k-fold, both photos modified",
    "faceres_reid_accuracy": "as reid_accuracy, attacked by faceres (a second recognizer) at the face box",
    "face_found": "fraction of modified photos where MTCNN finds a face with IoU >= 0.3 to the face box",
    "ssim": "SSIM inside the face box, original vs modified",
    "psnr": "PSNR (dB) inside the face box, capped at 100 for identical boxes",
    "saturation_added": "mean HSV saturation (0-255) in the face box, modified minus original",
    "chroma_shift": "mean per-pixel (Cb, Cr) distance (0-255) in the face box: colour changed pixel by pixel",
    "landmark_shift_iod": "mean distance of MTCNN's 5 landmarks, modified vs original, / inter-ocular distance",
}


def _yardstick_md(results: dict, run: dict | None) -> str:
    facts = (run or {}).get("yardstick", {})
    lines = ["# Yardstick", ""]
    if facts:
        lines += [f"{facts.get('num_photos')} photos of {facts.get('identities')} identities "
                  f"({facts.get('identities_source')}), {facts.get('num_pairs')} pairs; attacker: "
                  f"dlib {'at the original face rectangle' if facts.get('attacker') == 'box' else 'with its HOG detector'}; "
                  f"MTCNN finds the face in {_pct(facts.get('face_found_original'), 1)}% of the originals.", ""]
        if facts.get("second_attacker"):
            seen = (run or {}).get("faceres_in_training")
            lines += [f"Second attacker: {facts['second_attacker']}"
                      + (" (M trained against it: not an unseen attacker)." if seen else "."), ""]
    second = any("faceres_reid_accuracy" in v for v in results.values())
    lines += ["| method | re-id % | verification % |" + (" re-id % (faceres) |" if second else "")
              + " still a face % | SSIM | PSNR dB | saturation added | chroma shift |"
              " landmark shift / IOD |",
              "|---|---:|---:|" + ("---:|" if second else "") + "---:|---:|---:|---:|---:|---:|"]
    num = lambda v, d: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"
    for m, v in results.items():
        lines.append(f"| {m} | {_pct(v.get('reid_accuracy'), 1)} | {_pct(v.get('verification_accuracy'), 1)}"
                     + (f" | {_pct(v.get('faceres_reid_accuracy'), 1)}" if second else "")
                     + f" | {_pct(v.get('face_found'), 1)} | {num(v.get('ssim'), 3)} | {num(v.get('psnr'), 1)}"
                     f" | {num(v.get('saturation_added'), 1)} | {num(v.get('chroma_shift'), 1)}"
                     f" | {num(v.get('landmark_shift_iod'), 3)} |")
    return "\n".join(lines) + "\n"


def _privacy_plane(results: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.patches
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 5.0), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    colors = matplotlib.colormaps["tab10"]
    # issue 10's goal: re-identification <= 55% with a face still found in >= 97%
    ax.add_patch(matplotlib.patches.Rectangle((40, 97), 15, 5, color="0.9", zorder=0))
    ax.text(40.5, 95.5, "goal", fontsize=7, color="0.4", va="top")
    ax.axvline(50, color="0.6", lw=0.8, ls="--")
    ax.text(50.5, 50, "chance", fontsize=7, color="0.4", rotation=90)
    for i, (m, v) in enumerate(results.items()):
        x, y = 100 * v["reid_accuracy"], 100 * v["face_found"]
        ax.plot([x], [y], "o", color=colors(i % 10), ms=8, label=m)
        ax.annotate(m, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
    ax.set_xlim(40, 102)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("re-identification accuracy (%), dlib, original vs modified  [lower: more private]")
    ax.set_ylabel("still a face (%), MTCNN at the face box  [higher: more useful]")
    ax.set_title("The privacy plane: top-left is better")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def _before_after(examples: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    columns = [k for k in examples if k != "keys"]
    rows = len(examples.get("original", []))
    fig = Figure(figsize=(1.6 * len(columns), 1.7 * max(rows, 1)), dpi=110)
    for r in range(rows):
        for c, name in enumerate(columns):
            ax = fig.add_subplot(max(rows, 1), len(columns), r * len(columns) + c + 1)
            ax.imshow(examples[name][r])
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def write_yardstick_report(results: dict, out_dir: str | os.PathLike, run: dict | None = None,
                           examples: dict | None = None) -> dict:
    """Writes report.json, privacy_plane.png, yardstick.md and (with `examples`)
    before_after.png into `out_dir` (atomically).

    Args:
        results: {method: the yardstick's figures (`evaluation.yardstick.summarize`)}.
        run: facts about the run, stored under "run" in report.json.
        examples: {"original": [crops], method: [crops], ...} for before_after.png.

    Returns:
        {file name: path}.
    """
    if not results:
        raise InputError("no results to report: the method list was empty")
    for method, values in results.items():
        missing = [k for k in ("reid_accuracy", "face_found") if k not in values]
        if missing:
            raise InputError(f"results for method {method!r} lack {', '.join(missing)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"methods": _json_ready(results), "notes": dict(YARDSTICK_NOTES)}
    if run:
        report["run"] = _json_ready(run)
    paths = {name: out / name for name in ("report.json", "privacy_plane.png", "yardstick.md")}
    atomic_write_json(paths["report.json"], report)
    _privacy_plane(results, paths["privacy_plane.png"])
    atomic_write_text(paths["yardstick.md"], _yardstick_md(results, run))
    if examples:
        paths["before_after.png"] = out / "before_after.png"
        _before_after(examples, paths["before_after.png"])
    return {k: str(v) for k, v in paths.items()}
