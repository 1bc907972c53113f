"""The benchmark's outputs: the terminal table, the Markdown table, the JSON file and the speedup chart (PNG).

Results written before the peers existed (no ``peers`` in the result or its points) render too: their peer columns
say "-" and the chart has no peer bars.
"""
from __future__ import annotations

import json
import math
import os

from .peers import PEERS

JSON_NAME, MD_NAME, PNG_NAME = "latest.json", "latest.md", "latest.png"


# ---------------------------------------------------------------------- formatting
def fmt_time(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds:.2f}s"


def _med_p90(t) -> str:
    return f"{fmt_time(t['median_s'])} / {fmt_time(t['p90_s'])}" if t else "-"


def _met(value) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _ratio(r) -> str:
    return f"{r:.2f}x" if r is not None and math.isfinite(r) else "-"


PEER_STATUS = {"not installed": "not installed", "n/a": "n/a", "mismatch": "MISMATCH"}


def peer_cell(point, name, what="time"):
    """A peer's cell in a point's row: its median / p90 (``what="time"``) or the engine's ratio over it (a row dict
    as ``what``), or why it was not timed; "-" where the result predates the peers."""
    rec = point.get("peers", {}).get(name)
    if rec is None:
        return "-"
    if rec["status"] != "timed":
        return PEER_STATUS.get(rec["status"], rec["status"])
    if what == "time":
        return _med_p90(point["timings"].get(name))
    return _ratio(what.get(f"ratio_vs_{name}"))


def peer_notes(result) -> list:
    """One line per (peer, reason) for the points where a peer was not timed, naming the points."""
    groups = {}
    for p in result["points"]:
        for name, rec in p.get("peers", {}).items():
            if rec["status"] != "timed":
                groups.setdefault((rec["label"], rec["status"], rec["reason"]), []).append(p)
    all_at = {}
    for p in result["points"]:
        all_at.setdefault(p["threads"], set()).add(p["scenario"])
    lines = []
    for (label, status, reason), points in groups.items():
        by_threads = {}
        for p in points:
            by_threads.setdefault(p["threads"], []).append(p["scenario"])
        where = []
        for n, names in sorted(by_threads.items()):
            if set(names) == all_at[n]:
                where.append(f"every {n}-thread point")
            else:
                where.append(", ".join(names) + f" ({n}T)")
        lines.append(f"{label} {PEER_STATUS.get(status, status)} in {'; '.join(where)}: {reason}")
    return lines


def table_rows(result):
    """One dict of strings per (scenario, variant, threads); a failed point is one row saying why."""
    rows = []
    for p in result["points"]:
        base = {"scenario": p["scenario"], "threads": str(p["threads"])}
        if p["error"]:
            kind = "MISMATCH" if p["error"]["kind"] == "mismatch" else "ERROR"
            rows.append({**base, "error": f"{kind}: {p['error']['message']}"})
            continue
        t = p["timings"]
        for r in p["rows"]:
            diffs = p["check"]["max_abs_diff"][r["engine"]]
            variant = "" if r["variant"] == "run" else f" {r['variant']}"
            peer_cells = {}
            for peer in PEERS:
                peer_cells[peer.name] = peer_cell(p, peer.name)
                peer_cells["vs_" + peer.name] = peer_cell(p, peer.name, r)
            rows.append({**base, "scenario": p["scenario"] + variant,
                         "engine": _med_p90(t[r["engine"]]), "onnxruntime": _med_p90(t["onnxruntime"]),
                         **peer_cells,
                         "torch": _med_p90(t["torch"]), "vs_ort": _ratio(r["ratio_vs_onnxruntime"]),
                         "vs_torch": _ratio(r["ratio_vs_torch"]), "gflops": f"{r['gflops'][r['engine']]:.1f}",
                         "diff": f"{max(diffs.values()):.1e}",
                         "target": " ".join(x["text"] for x in r["targets"]) or "-",
                         "met": _met(r["met"]) + ("" if r["met"] is not False else
                                                  " (" + ",".join(x["text"] for x in r["targets"]
                                                                  if not x["met"]) + ")")})
    return rows


COLUMNS = [("scenario", "scenario"), ("threads", "thr"), ("engine", "engine med / p90"),
           ("onnxruntime", "onnxruntime med / p90"), *((p.name, f"{p.label} med / p90") for p in PEERS),
           ("torch", "torch med / p90"), ("vs_ort", "vs ORT"), *(("vs_" + p.name, f"vs {p.label}") for p in PEERS),
           ("vs_torch", "vs torch"), ("gflops", "GFLOP/s"), ("diff", "max|diff|"), ("target", "target"),
           ("met", "met")]


def cold_rows(result):
    rows = []
    for c in result["cold_start"]:
        target = f"<{c['target_max_seconds']:g}s" if c["target_max_seconds"] is not None else "-"
        if c.get("status") == "not installed":
            rows.append({"scenario": c["scenario"], "error": c["reason"]})
            continue
        if c["error"] and not c.get("seconds"):
            rows.append({"scenario": c["scenario"], "error": f"{c['error']['kind'].upper()}: {c['error']['message']}"})
            continue
        rows.append({"scenario": c["scenario"], "seconds": fmt_time(c.get("seconds")),
                     "process": fmt_time(c.get("process_seconds")), "rss": f"{c.get('peak_rss_mib', 0):.0f} MiB",
                     "runs": str(len(c["runs"])), "diff": f"{c['max_abs_diff']:.1e}", "target": target,
                     "met": _met(c["met"]) + (f" ({c['error']['message']})" if c["error"] else "")})
    return rows


COLD_COLUMNS = [("scenario", "cold start (1 thread)"), ("seconds", "import -> 1st result"),
                ("process", "process wall"), ("rss", "peak RSS"), ("runs", "runs"), ("diff", "max|diff|"),
                ("target", "target"), ("met", "met")]


def _peer_versions(result) -> str:
    peers = result.get("peers", {})
    return "".join(f", {p['label']} {p['version'] or 'not installed'}" for p in peers.values())


def _machine_line(result) -> str:
    m = result["machine"]
    v = m["versions"]
    return (f"{m['cpu_model']}, {m['available_cores']} core(s) available, {m['memory_gib']} GiB; "
            f"numba {v['numba']}, onnxruntime {v['onnxruntime']}{_peer_versions(result)}, torch {v['torch']}, "
            f"numpy {v['numpy']}")


def _settings_line(result) -> str:
    s = result["settings"]
    m = result["machine"]
    load = m.get("load_average_start"), m.get("load_average_end")
    load_txt = ""
    if all(load):
        load_txt = f"; 1-min load average {load[0][0]:.1f} at start, {load[1][0]:.1f} at end"
    return (f"{'quick' if s['quick'] else 'full'} run, >= {s['repeat_seconds']:g}s and >= {s['min_calls']} calls "
            f"per runtime per point, interleaved; threads {s['threads']}{load_txt}")


def _text_table(rows, columns):
    widths = {k: len(h) for k, h in columns}
    for r in rows:
        if "error" not in r:
            for k, _ in columns:
                widths[k] = max(widths[k], len(r.get(k, "")))
    lines = ["  ".join(h.ljust(widths[k]) for k, h in columns)]
    lines.append("  ".join("-" * widths[k] for k, _ in columns))
    for r in rows:
        if "error" in r:
            lead = "  ".join(r.get(k, "").ljust(widths[k]) for k, _ in columns[:2] if k in r)
            lines.append(f"{lead}  {r['error']}")
        else:
            lines.append("  ".join(r.get(k, "").ljust(widths[k]) for k, _ in columns).rstrip())
    return "\n".join(lines)


def terminal_table(result) -> str:
    parts = [f"lstm-engine bench: {_machine_line(result)}", _settings_line(result),
             "ratio = onnxruntime median / engine median (higher is better); GFLOP/s of the engine's matrix products",
             ""]
    if result["points"]:
        parts.append(_text_table(table_rows(result), COLUMNS))
        notes = peer_notes(result)
        if notes:
            parts += ["", "peers not timed:"] + ["  " + n for n in notes]
    if result["cold_start"]:
        parts += ["", _text_table(cold_rows(result), COLD_COLUMNS)]
    return "\n".join(parts)


def _md_table(rows, columns):
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        if "error" in r:
            cells = [r.get("scenario", ""), r.get("threads", "")] if "threads" in r else [r.get("scenario", "")]
            cells.append("**" + r["error"].replace("|", "/") + "**")
            cells += [""] * (len(columns) - len(cells))
        else:
            cells = [r.get(k, "") for k, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(result) -> str:
    parts = [f"Benchmark of {result['created']}: {_machine_line(result)}.", "",
             _settings_line(result) + ". Ratio = onnxruntime median time per call / engine median time per call "
             "(higher is better); med / p90 are per call; GFLOP/s count the engine's LSTM matrix products "
             "(2*T*B*G*H*(I+H) per direction per layer; G = 4 LSTM, 3 GRU, 1 RNN). Targets from issue 3; `>run`: stream.step faster than run "
             "with the state in/out; `>=1T`: all-core ratio at least the single-thread ratio (within 5%, the run-to-run noise).", ""]
    if result.get("peers"):
        parts += ["Peers, on the same ONNX file, checked against onnxruntime before they are timed (`vs OpenVINO`, "
                  "`vs tract`: the engine's speedup over them):", ""]
        for p in result["peers"].values():
            not_at = "".join(f"; not with {n} threads: {why}" for n, why in p["not_timed_at"].items())
            parts.append(f"- {p['label']} {p['version'] or 'not installed (' + p['install'] + ')'}: "
                         f"{p['settings']}{not_at}")
        parts.append("")
    if result["points"]:
        parts.append(_md_table(table_rows(result), COLUMNS))
        notes = peer_notes(result)
        if notes:
            parts += ["", "Peers not timed:", ""] + ["- " + n for n in notes]
    if result["cold_start"]:
        parts += ["", _md_table(cold_rows(result), COLD_COLUMNS)]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------- chart
def plot(result, path) -> None:
    """Bars of the speedup against onnxruntime per scenario, one series per thread count, a line at 1.0x and a
    tick at each target. Drawn with the Agg canvas directly, so no global matplotlib backend is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    threads = result["settings"]["threads"]
    labels, targets = [], {}
    for p in result["points"]:
        variants = [r["variant"] for r in p["rows"]] or (["run (state in/out)", "stream.step"]
                                                         if p["kind"] == "stream" else ["run"])
        for v in variants:
            label = p["scenario"] + ("" if v == "run" else "\n" + v.replace(" (state in/out)", " in/out"))
            if label not in labels:
                labels.append(label)
    values = {n: [None] * len(labels) for n in threads}
    for p in result["points"]:
        variants = [r["variant"] for r in p["rows"]] or (["run (state in/out)", "stream.step"]
                                                         if p["kind"] == "stream" else ["run"])
        rows = {r["variant"]: r for r in p["rows"]}
        for v in variants:
            i = labels.index(p["scenario"] + ("" if v == "run" else "\n" + v.replace(" (state in/out)", " in/out")))
            r = rows.get(v)
            values[p["threads"]][i] = r["ratio_vs_onnxruntime"] if r else "ERR"
            if r and r["min_ratio"] is not None:
                targets[i] = r["min_ratio"]
    fig = Figure(figsize=(max(8.0, 0.75 * len(labels) + 2), 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(threads))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for k, n in enumerate(threads):
        xs = [i + (k - (len(threads) - 1) / 2) * width for i in range(len(labels))]
        heights = [v if isinstance(v, float) else 0.0 for v in values[n]]
        name = "1 thread" if n == 1 else f"{n} threads" + (" (all cores)" if n == result["machine"]["available_cores"]
                                                             else "")
        bars = ax.bar(xs, heights, width=width * 0.95, label=name, color=colors[k % len(colors)])
        for x, v, b in zip(xs, values[n], bars):
            if v == "ERR":
                ax.text(x, 0.02, "ERR", ha="center", va="bottom", color="red", fontsize=7, rotation=90)
            elif v is not None:
                ax.text(x, b.get_height(), f"{v:.1f}", ha="center", va="bottom", fontsize=6)
    for i, t in targets.items():
        ax.hlines(t, i - 0.45, i + 0.45, colors="black", linestyles="solid", linewidth=1.2,
                  label="target" if i == min(targets) else None)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="onnxruntime (1.0x)")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("speedup vs onnxruntime (ORT time / engine time)")
    ax.set_title(f"lstm-engine vs onnxruntime, median per call\n{result['machine']['cpu_model']}, "
                 f"{result['created']}", fontsize=9)
    ax.legend(fontsize=7)
    ax.set_ylim(bottom=0)
    if not labels:
        ax.text(0.5, 0.5, "no sequence scenarios in this run", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)


# ---------------------------------------------------------------------- files
def _finite(obj):
    """JSON without NaN/Infinity (not valid JSON): non-finite floats become the strings 'nan', 'inf', '-inf'."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_all(result, out_dir) -> list:
    paths = [os.path.join(out_dir, n) for n in (JSON_NAME, MD_NAME, PNG_NAME)]
    with open(paths[0], "w") as f:
        json.dump(_finite(result), f, indent=1)
        f.write("\n")
    with open(paths[1], "w") as f:
        f.write(markdown(result))
    plot(result, paths[2])
    return paths
