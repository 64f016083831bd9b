"""The Markdown form of an eval report: one row per metric, one column per split, a reference column,
then what was skipped and why, the settings and the library versions."""
from __future__ import annotations


def _ci(ci, fmt: str, scale: float = 1.0) -> str:
    return "" if ci is None else f" [{fmt.format(scale * ci[0])}, {fmt.format(scale * ci[1])}]"


def _val(d: dict, key: str, fmt: str = "{:.2f}", scale: float = 1.0, unit: str = "", ci: str | None = None) -> str:
    """`value unit [lo, hi]` from d[key] and d[ci] (default key + '_ci95')."""
    return fmt.format(scale * d[key]) + unit + _ci(d.get(ci or f"{key}_ci95"), fmt, scale)


def _pct(d: dict, key: str = "accuracy", ci: str = "ci95") -> str:
    return _val(d, key, "{:.1f}", 100, " %", ci)


def _reconstruction_rows(split: dict) -> list[tuple[str, str, str]]:
    """Short and long reconstruction, the flat-image reference and the reassembly ratio."""
    rows = []
    for name, key in (("short", "short_reconstruction"), ("long", "long_reconstruction")):
        r = split[key]
        rows.append((f"{name} reconstruction PSNR (95 % CI) / SSIM / L1",
                     f"{_val(r, 'psnr', unit=' dB')} / {r['ssim']:.3f} / {r['l1']:.4f}",
                     "higher / higher / lower" if name == "short" else "≈ short"))
        if "lpips" in r:
            rows.append((f"{name} reconstruction LPIPS", _val(r, "lpips", "{:.3f}"), "0 is identical"))
    rows.append(("reference: flat image of each image's mean colour (PSNR)",
                 f"{split['short_reconstruction']['baseline_flat_psnr']:.2f} dB", "reconstruction must beat"))
    a = split["reassembly"]
    rows.append(("double-swap / short reconstruction L1 on the same x1 (95 % CI)", _val(a, "ratio", ci="ratio_ci95"),
                 "1 = lossless swaps; goal ≤ 1.1"))
    return rows


def _swap_rows(split: dict) -> list[tuple[str, str, str]]:
    """Swap fidelity against the true render, class transfer (one-shot and K-shot)."""
    rows = []
    if "swap" in split:
        w = split["swap"]
        rows += [("swap PSNR vs true render (95 % CI)", _val(w, "psnr", unit=" dB"), "higher"),
                 ("baseline: flat image of the target's mean colour", f"{w['baseline_flat_psnr']:.2f} dB",
                  "swap must beat"),
                 ("baseline: copy the content source x1", f"{w['baseline_copy_content_source_psnr']:.2f} dB",
                  "swap must beat"),
                 ("swap SSIM vs true render (95 % CI)", _val(w, "ssim", "{:.3f}"), "1 is perfect")]
        if "lpips" in w:
            rows.append(("swap LPIPS vs true render (95 % CI)", _val(w, "lpips", "{:.3f}"),
                         f"copying x1: {w['baseline_copy_content_source_lpips']:.3f}"))
    if "class_transfer" in split:
        c = split["class_transfer"]
        rows.append(("class transfer accuracy (95 % CI; chance)", f"{_pct(c)}; {100 * c['chance']:.1f} %", "higher"))
        rows.append(("classifier sees the content source's class in m1",
                     f"{100 * c['content_source_class_rate']:.1f} %", "0"))
    for entry in split.get("few_shot", {}).values():
        k = entry["k"]
        if "class_transfer" in entry:
            rows.append((f"class transfer, {k}-shot class code (95 % CI)", _pct(entry["class_transfer"]),
                         "higher; K-shot ≥ 1-shot"))
        if "swap_psnr" in entry:
            rows.append((f"swap PSNR, {k}-shot class code (95 % CI)",
                         _val(entry["swap_psnr"], "psnr", unit=" dB", ci="ci95"), "higher"))
    return rows


def _code_rows(split: dict) -> list[tuple[str, str, str]]:
    """Copy-through, the code cycle and the leakage probes."""
    rows = []
    t = split["copy_through"]
    if "true_render" in t:
        rows.append(("copy-through: m1 closer to x1 than to the true render (95 % CI)",
                     _pct(t["true_render"], "rate"), "0 (goal); copying x1 = 100 %"))
    rows.append(("copy-through: ‖m1 − x̂1‖ ≤ ‖x̂1 − x1‖ (95 % CI)", _pct(t["reconstruction"], "rate"),
                 "0 (goal); copying x1 = 100 %"))
    for part, label in (("class", "class code of m1 vs x2's"), ("content", "content code of m1 vs x1's")):
        g = split["code_cycle"][part]
        same = f"; same class {g['same_class_level']:.3f}" if "same_class_level" in g else ""
        rows.append((f"code cycle: cosine of {label} (centred; 95 % CI)", _val(g, "agreement", "{:.3f}", ci="ci95"),
                     f"unrelated image {g['unrelated_level']:.3f}{same}"))
    for key, label in (("class_from_content_probe", "linear"), ("class_from_content_mlp_probe", "MLP")):
        if key in split:
            p = split[key]
            rows.append((f"class from content code ({label} probe, 95 % CI; chance)",
                         f"{_pct(p)}; {100 * p['chance']:.1f} %", "chance (goal)"))
    for key, label, goal in (
            ("content_from_class_r2", "content factors from class code (R², ridge)", "0 (goal)"),
            ("content_from_class_mlp_r2", "content factors from class code (R², MLP)", "0 (goal)"),
            ("content_from_content_r2", "content factors from content code (R², ridge)", "1 (informative)")):
        if key in split:
            rows.append((f"{label} (95 % CI)", _val(split[key], "mean", "{:.3f}", ci="ci95"), goal))
    return rows


def _judged_rows(split: dict) -> list[tuple[str, str, str]]:
    """DCI, realism (FID/KID) and identity similarity, where they were measured."""
    rows = []
    if "dci" in split:
        d = split["dci"]
        for key in ("disentanglement", "completeness", "informativeness"):
            ref = "1 ideal; codes ignoring the factors 0" if key != "informativeness" else \
                f"1 ideal; chance {d['reference']['informativeness_chance']:.3f}"
            rows.append((f"DCI {key} (class, content blocks; 95 % CI over {d['repeats']} seeds)",
                         _val(d, key, "{:.3f}"), ref))
    if "realism" in split and "fid" in split["realism"]:
        r = split["realism"]
        for key, fmt in (("fid", "{:.2f}"), ("kid", "{:.4f}")):
            chunks = f"{r['chunks']} chunks of {r['n_per_side'] // r['chunks']}"
            rows.append((f"{key.upper()} of m1 vs real ({chunks}; 95 % CI)",
                         _val(r, key, fmt), "real vs real " + fmt.format(r[f"{key}_real_reference"])))
    if "identity_similarity" in split:
        g = split["identity_similarity"]
        rows.append(("identity similarity of m1 to x2 (cosine, 95 % CI)", _val(g, "agreement", "{:.3f}", ci="ci95"),
                     f"unrelated {g['unrelated_level']:.3f}; same identity {g['same_class_level']:.3f}; "
                     f"m1 to x1 {g['to_content_source']:.3f}"))
    return rows


def _rows(split: dict) -> list[tuple[str, str, str]]:
    """(metric, value, reference) rows of one evaluated split; a split lacking a metric has no row."""
    return _reconstruction_rows(split) + _swap_rows(split) + _code_rows(split) + _judged_rows(split)


def _sample_note(name: str, split: dict) -> str:
    n = split["sample"]
    return (f"- {name}: {split['n_images']} images; {n['pairs']} test pairs, {n['images']} images (seeded sample) "
            "for the short reconstructions, probes and DCI"
            + (f", {n['realism_per_side']} per side for FID/KID" if n["realism_per_side"] else ""))


def fonts_lines(section: dict) -> list[str]:
    """The fonts section (`evaluation.fonts.font_swap_scores`): one table of rows × metrics per split."""
    acc = section["judges"]["accuracy"]
    lines = ["## Fonts: true swaps", "",
             f"Judges ({section['judges']['steps']} steps, {section['judges']['image_size']} px): character "
             f"{100 * acc['character']:.1f} % on the held-out fonts' real glyphs; font "
             f"{100 * acc['training fonts']:.1f} % (training fonts), {100 * acc['held-out fonts']:.1f} % (held-out "
             f"fonts) on real glyphs of characters they did not learn from ({section['judges']['pair_chars']}, "
             "the characters of the pairs). m1 is judged against the true render lookup(f2, c1); K-shot: the mean "
             "class code of x2 and K − 1 other glyphs of f2, never the answer. Character kept (readable): among the "
             "pairs whose true render the character judge reads correctly."]
    for split in ("training fonts", "held-out fonts"):
        part = section[split]
        if "skipped" in part:
            lines += ["", f"- {part['skipped']}"]
            continue
        lines += ["", f"### {split} ({part['fonts']} fonts, {part['pairs']} pairs; 95 % CI of PSNR)", "",
                  "| | swap PSNR (dB) | SSIM | L1 | character kept | character kept (readable) | font transferred "
                  "| copy-through |", "|---|---|---|---|---|---|---|---|"]
        for name, r in part["rows"].items():
            pct = " | ".join(f"{100 * r[k]:.1f} %" for k in ("character_kept", "character_kept_readable",
                                                                "font_transferred", "copy_through"))
            lines.append(f"| {name} | {_val(r, 'psnr')} | {r['ssim']:.3f} | {r['l1']:.4f} | {pct} |")
        most = f"model {max(section['settings']['k_shots'])}-shot"  # the row with the most references
        if "misread" in part["rows"].get(most, {}):
            lines += ["", f"Most frequent misreadings of m1 ({most}, among the readable answers; character → what "
                      f"the judge read, how often): {_misread(part['rows'][most]['misread'])}."]
        if "redrawn" in part:
            r = part["redrawn"]
            lines += ["", f"Redrawn (x1's content code with the {max(section['settings']['k_shots'])}-shot class code "
                      f"of its own font; what the model draws back of its own): PSNR against x1 {_val(r, 'psnr')}, "
                      f"SSIM {r['ssim']:.3f}, character kept {100 * r['character_kept']:.1f} % (readable: "
                      f"{100 * r['character_kept_readable']:.1f} %), font kept {100 * r['font_kept']:.1f} %"
                      + (f"; most frequent misreadings: {_misread(r['misread'])}." if "misread" in r else ".")]
    if "content code" in section:
        char, font = section["content code"]["character"], section["content code"]["font"]
        lines += ["", "What the content code holds (linear probes; the same probe on the pixels in brackets): the "
                  f"character of the held-out fonts {100 * char['code']:.1f} % ({100 * char['pixels']:.1f} %; chance "
                  f"{100 * char['chance']:.1f} %), fitted on the training fonts; the font among the held-out fonts "
                  f"{100 * font['code']:.1f} % ({100 * font['pixels']:.1f} %; chance {100 * font['chance']:.1f} %), "
                  "read on characters it was not fitted on. The character is what the swap must keep, the font what "
                  "it can copy from x1."]
    return lines


def _misread(items: list[list]) -> str:
    """'F' → 'P' 29, 's' → 'o' 23 (none: "none")."""
    return ", ".join(f"'{c}' → '{read}' {n}" for c, read, n in items) or "none"


def to_markdown(report: dict) -> str:
    splits = [k for k in report if isinstance(report[k], dict) and "short_reconstruction" in report[k]]
    lines = [f"# G2G evaluation — {report['data']} ({report['image_size']} px)", ""]
    if "collapse" in report:  # first: a model that draws nothing useful makes every number below moot
        c = report["collapse"]
        lines += [f"**{c['verdict']}** ({c['pairs']} test pairs of {c['split']})" if c["failed"] else
                  f"{c['verdict']} ({c['pairs']} test pairs of {c['split']})", ""]
    gen = report.get("generator")
    if gen:  # how the model reads a content code matters to every figure below
        fit = f", pose fit {gen['n_fit']} steps" if gen.get("arch") == "sprite" else ""
        lines += [f"Model: {report['model']} (arch {gen['arch']}{fit})", ""]
    if "classifier_accuracy_real_test" in report:
        judge = report.get("judge")
        fitted = f" (trained on {judge['fitted_on']}: {judge['images']} images at {judge['image_size']} px)" \
            if judge else ""
        lines += [f"Independent classifier accuracy on real test images: "
                  f"{100 * report['classifier_accuracy_real_test']:.1f} %{fitted}", ""]
    lines += ["| metric | " + " | ".join(splits) + " | reference |", "|---|" + "---|" * len(splits) + "---|"]
    rows_by_split = [_rows(report[s]) for s in splits]
    per_split = [{name: value for name, value, _ in rows} for rows in rows_by_split]
    references: dict[str, str] = {}
    for rows in rows_by_split:  # ordered union of the splits' rows
        for name, _, ref in rows:
            references.setdefault(name, ref)
    for name, ref in references.items():
        lines.append(f"| {name} | " + " | ".join(rows.get(name, "—") for rows in per_split) + f" | {ref} |")
    notes = [f"- {line}" for split in splits for line in
             [report[split].get("class_from_content_probe_skipped"), report[split].get("realism", {}).get("skipped")]
             if line]
    notes += [f"- not measured: {line}" for line in report.get("skipped", {}).values()]
    first = report[splits[0]] if splits else {}
    if "few_shot" in first:
        notes.append("- K-shot: x2's class code replaced by the mean class code of x2 and K − 1 other test images "
                     "of its class (FUNIT's protocol; on held-out classes the classes were never trained on)")
    notes += [_sample_note(split, report[split]) for split in splits if "sample" in report[split]]
    if "dci" in first:
        notes.append(f"- DCI: {first['dci']['method']}")
    if notes:
        lines += ["", *notes]
    if "fonts" in report:
        lines += ["", *fonts_lines(report["fonts"])]
    settings = report.get("settings", {})
    if settings:
        lines += ["", "Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items())
                  + (f"; {report['runtime_s']} s" if "runtime_s" in report else "")]
    if "versions" in report:
        lines += ["", "Versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in report["versions"].items())]
    return "\n".join(lines)
