"""`fewshot report`: fetch a tenant's evaluation report over HTTP (stdlib only) and render it as text tables."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

TABLE_ROWS = 15


class ReportError(RuntimeError):
    """The server refused (its error envelope's code and message) or could not be reached."""


def fetch_report(url: str, tenant_id: str, key: str | None, version: int | None = None, timeout_s: float = 120.0):
    """POST {url}/tenants/{tenant_id}/evaluate and return the decoded reply."""
    body = json.dumps({} if version is None else {"version": version}).encode("utf-8")
    request = urllib.request.Request(
        f"{url.rstrip('/')}/tenants/{urllib.request.quote(tenant_id, safe='')}/evaluate",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            message = f"{exc.code} {error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise ReportError(message) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ReportError(f"cannot reach {url}: {exc}") from exc


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain text table with columns padded to their widest cell."""
    cells = [header, *[[_cell(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render(reply: dict[str, Any]) -> str:
    """The report as text: summary, per-label metrics, confused pairs, labels needing examples, mislabels."""
    report = reply["report"]
    parts = [
        f"tenant {reply['tenant_id']}  version {reply['version']}  ({report['method']}, {report['n_folds']} folds)"
    ]
    if report.get("task") == "multi_label":
        return "\n".join(parts + render_multilabel(report))
    if report["accuracy"] is None:
        parts.append("accuracy: not evaluable (every label has a single example)")
    else:
        low, high = report["accuracy_ci95"]
        parts.append(
            f"accuracy {100 * report['accuracy']:.1f} % (95 % CI {100 * low:.1f}-{100 * high:.1f})  "
            f"macro-F1 {report['macro_f1']:.3f}  ECE {report['ece']:.3f}  scored {report['n_evaluated']}"
            f" of {report['n_examples']} examples"
        )
    if report["not_evaluable"]:
        parts.append(f"not evaluable (one example): {', '.join(report['not_evaluable'])}")
    per_label = sorted(report["per_label"], key=lambda e: (e["f1"] is not None, e["f1"] or 0.0))
    parts += [
        "",
        table(
            ["label", "examples", "precision", "recall", "f1", "status"],
            [[e["label"], e["examples"], e["precision"], e["recall"], e["f1"], e["status"]] for e in per_label],
        ),
    ]
    if report["confused_pairs"]:
        rows = [
            [p["true"], p["predicted"], p["count"], "; ".join(p["examples"])[:60]] for p in report["confused_pairs"]
        ]
        parts += ["", "most confused", table(["true", "predicted", "count", "examples"], rows[:TABLE_ROWS])]
    if report["labels_needing_examples"]:
        rows = [[n["label"], n["examples"], "; ".join(n["reasons"])] for n in report["labels_needing_examples"]]
        parts += ["", "labels needing examples", table(["label", "examples", "why"], rows[:TABLE_ROWS])]
    if report["suspected_mislabels"]:
        rows = [[m["text"][:50], m["label"], m["nearest_label"], m["margin"]] for m in report["suspected_mislabels"]]
        parts += ["", "suspected mislabels", table(["text", "filed under", "closer to", "margin"], rows[:TABLE_ROWS])]
    if report["near_duplicates"]:
        rows = [
            [d["a"]["text"][:40], d["a"]["label"], d["b"]["text"][:40], d["b"]["label"], d["similarity"]]
            for d in report["near_duplicates"]
        ]
        parts += ["", "near-duplicates", table(["text", "label", "text", "label", "cosine"], rows[:TABLE_ROWS])]
    if report["oos_tradeoff"]:
        rows = [
            [p["rule"], p["threshold"], p["in_scope_recall"], p["false_rejection"], p["accuracy"]]
            for p in report["oos_tradeoff"]
        ]
        parts += [
            "",
            "out-of-scope trade-off",
            table(["rule", "threshold", "in-scope recall", "false rejection", "accuracy"], rows),
        ]
    return "\n".join(parts)


def render_multilabel(report: dict[str, Any]) -> list[str]:
    """A multi-label report's lines: summary, per-label metrics and thresholds, labels needing examples."""
    if not report["evaluable"]:
        lines = ["not evaluable (too few examples to hold any out)"]
    else:
        per_text = report["labels_per_text"]
        lines = [
            f"micro-F1 {report['micro_f1']:.3f}  macro-F1 {report['macro_f1'] or 0.0:.3f}  exact match "
            f"{report['exact_match']:.3f}  labels per text {per_text['predicted']:.2f} (true {per_text['true']:.2f})"
            f"  scored {report['n_evaluated']} of {report['n_examples']} examples ({report['n_negatives']} negative)"
        ]
    per_label = sorted(report["per_label"], key=lambda e: (e["f1"] is not None, e["f1"] or 0.0))
    rows = [[e["label"], e["examples"], e["precision"], e["recall"], e["f1"], e["threshold"]] for e in per_label]
    lines += ["", table(["label", "examples", "precision", "recall", "f1", "threshold"], rows)]
    if report["labels_needing_examples"]:
        needs = [[n["label"], n["examples"], "; ".join(n["reasons"])] for n in report["labels_needing_examples"]]
        lines += ["", "labels needing examples", table(["label", "examples", "why"], needs[:TABLE_ROWS])]
    return lines
