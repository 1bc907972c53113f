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
# One panel per workload family and thread count; within a panel, one group of horizontal bars per scenario and one
# bar per runtime, always in the same colour. The axis is the speedup over onnxruntime (its median time per call /
# the runtime's), so onnxruntime itself is the line at 1.0. Cold starts, a time rather than a ratio, get their own
# panel at the bottom (seconds, log scale).
FAMILIES = [
    ("LSTM streaming (T=1, state carried)", lambda kind, cell: kind == "stream" and cell == "lstm"),
    ("LSTM sequences (B=1)", lambda kind, cell: kind == "sequence" and cell == "lstm"),
    ("LSTM batches, bidirectional (T=100)", lambda kind, cell: kind in ("batched", "bidirectional")),
    ("GRU and RNN streaming (T=1)", lambda kind, cell: kind == "stream"),
    ("GRU and RNN sequences (B=1)", lambda kind, cell: kind == "sequence"),
]
# (key, legend label, colour): the engine's two call paths, then the peers
SERIES = [("engine", "lstm-engine run (state in/out when streaming)", "#1f4e99"),
          ("engine_step", "lstm-engine stream.step", "#6fa8dc"),
          ("openvino", "OpenVINO", "#8e44ad"),
          ("tract", "tract", "#e67e22")]
COLD_COLOURS = {"engine": "#1f4e99", "onnxruntime": "#7f7f7f", "openvino": "#8e44ad", "tract": "#e67e22"}
BAR, GAP, INCH_PER_BAR = 1.0, 0.7, 0.23   # bar and gap between scenarios in bar units; height of one unit


def _cell(point) -> str:
    cell = point.get("config", {}).get("cell")
    if cell:
        return cell
    head = point["scenario"].split("/")[0]
    return head if head in ("gru", "rnn") else "lstm"


def family_of(point) -> str:
    kind, cell = point["kind"], _cell(point)
    for title, test in FAMILIES:
        if test(kind, cell):
            return title
    return "Other workloads"


def short_label(point) -> str:
    """The scenario as its panel needs it (the panel title says the family): "H=64", "T=1000 H=128", "GRU H=128"."""
    c = point.get("config")
    if not c:
        return point["scenario"]
    cell = "" if c["cell"] == "lstm" else c["cell"].upper() + " "
    if point["kind"] == "stream":
        return f"{cell}H={c['H']}"
    if point["kind"] == "batched":
        return f"B={c['B']} H={c['H']}"
    if point["kind"] == "bidirectional":
        return f"bidir. {c['layers']} layers H={c['H']}"
    return f"{cell}T={c['T']} H={c['H']}"


def bar_values(point) -> dict:
    """{series key: speedup over onnxruntime, or the reason it has none (a short text)}, for the series that apply
    to this point (stream.step only where streaming; a peer only where the result has it)."""
    keys = ["engine"] + (["engine_step"] if point["kind"] == "stream" else [])
    if point.get("error"):
        text = "MISMATCH" if point["error"]["kind"] == "mismatch" else "ERROR"
        return {k: text for k in keys}
    rows = {r["engine"]: r["ratio_vs_onnxruntime"] for r in point["rows"]}
    values = {k: rows.get(k, "-") for k in keys}
    for name, rec in point.get("peers", {}).items():
        values[name] = rec.get("ratio_vs_onnxruntime") if rec["status"] == "timed" else \
            rec.get("short_reason") or rec["status"]
    return values


def _thread_title(n, result) -> str:
    return "1 thread" if n == 1 else f"{n} threads" + (" (all cores)" if n == result["machine"]["available_cores"]
                                                         else "")


def plot(result, path) -> None:
    """The speedup chart (see above). Drawn with the Agg canvas directly, so no global matplotlib backend is
    touched."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    threads = sorted({p["threads"] for p in result["points"]}) or result["settings"]["threads"][:1]
    peers = result.get("peers", {})
    # a peer that is not installed gets no bars, only a note
    series = [s for s in SERIES if s[0] in ("engine", "engine_step") or peers.get(s[0], {}).get("version")]
    order = {key: i for i, (key, _, _) in enumerate(series)}
    # families in their fixed order, each with its scenarios in run order and their bars (the union over threads)
    families = {}
    for p in result["points"]:
        groups = families.setdefault(family_of(p), {})
        group = groups.setdefault(p["scenario"], {"label": short_label(p), "keys": set(), "target": None})
        group["keys"].update(k for k in bar_values(p) if k in order)
        for r in p["rows"]:
            if r.get("min_ratio") is not None:
                group["target"] = r["min_ratio"]
    family_order = [t for t, _ in FAMILIES] + ["Other workloads"]
    fam_titles = [t for t in family_order if t in families]
    values = {(p["scenario"], p["threads"]): bar_values(p) for p in result["points"]}
    cold = result.get("cold_start") or []

    def units(groups):
        return sum(len(g["keys"]) * BAR for g in groups.values()) + GAP * (len(groups) - 1) + 0.6

    notes = [f"{p['label']}: not installed ({p['install']})" for p in peers.values() if not p["version"]]
    notes += [n for n in peer_notes(result) if "not installed" not in n]
    notes = [line for n in notes for line in textwrap.wrap(n, 40 + 45 * len(threads), subsequent_indent="    ")]
    heights = [units(families[t]) for t in fam_titles] + ([len(cold) * BAR + 2 * GAP] if cold else [])
    overhead = 0.95   # per panel: title and axis
    ratios = [h * INCH_PER_BAR + overhead for h in heights]
    if notes:   # a row of its own, so that the layout keeps it clear of the axes
        ratios.append(0.25 * len(notes) + 0.1)
    fig_h = 1.9 + sum(ratios) + 0.3 * len(threads)
    fig = Figure(figsize=(3.0 + 5.0 * len(threads), max(4.0, fig_h)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if not heights:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no results in this run", ha="center", va="center", transform=ax.transAxes, fontsize=14)
        ax.set_axis_off()
        fig.savefig(path)
        return
    grid = fig.add_gridspec(len(ratios), len(threads), height_ratios=ratios)

    numbers = [v for vals in values.values() for v in vals.values() if isinstance(v, float) and math.isfinite(v)]
    numbers += [g["target"] for fam in families.values() for g in fam.values() if g["target"] is not None]
    xmax = max(numbers + [1.0]) * 1.18
    colour = {key: c for key, _, c in series}
    for row, title in enumerate(fam_titles):
        groups = families[title]
        first_ax = None
        for col, n in enumerate(threads):
            ax = fig.add_subplot(grid[row, col], sharey=first_ax)
            first_ax = first_ax or ax
            y, ticks, labels = GAP, [], []
            for scenario, g in groups.items():
                keys = sorted(g["keys"], key=order.get)
                vals = values.get((scenario, n), {})
                top = y
                for key in keys:
                    v = vals.get(key)
                    if isinstance(v, float):
                        ax.barh(y, v, height=BAR * 0.85, color=colour[key])
                        ax.text(v + xmax * 0.008, y, f"{v:.2f}x", va="center", ha="left", fontsize=11, zorder=4,
                                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.3, "alpha": 0.8})
                    elif v is not None:
                        ax.text(xmax * 0.01, y, v, va="center", ha="left", fontsize=10, color="#a00000"
                                if v in ("MISMATCH", "ERROR", "mismatch") else "#777777", style="italic")
                    y += BAR
                ticks.append((top + y - BAR) / 2)
                labels.append(g["label"])
                if g["target"] is not None and "engine" in keys:
                    n_engine = sum(k in ("engine", "engine_step") for k in keys)
                    ax.vlines(g["target"], top - 0.45 * BAR, top + (n_engine - 0.55) * BAR, colors="black",
                              linewidth=2.0)
                y += GAP
            ax.axvline(1.0, color="#555555", linestyle="--", linewidth=1.2)
            ax.set_xlim(0, xmax)
            last = y - GAP - BAR   # the centre of the last bar
            ax.set_ylim(last + 0.5 * BAR + 0.3, GAP - 0.5 * BAR - 0.3)
            ax.set_yticks(ticks)
            ax.set_yticklabels(labels, fontsize=12)
            if col:
                ax.tick_params(labelleft=False)
            ax.tick_params(axis="x", labelsize=11)
            ax.grid(axis="x", color="#dddddd", linewidth=0.8)
            ax.set_axisbelow(True)
            ax.set_title(f"{title}, {_thread_title(n, result)}", fontsize=13, loc="left")
            if row == len(fam_titles) - 1:
                ax.set_xlabel("speedup over onnxruntime (higher is faster)", fontsize=12)

    if cold:
        ax = fig.add_subplot(grid[len(fam_titles), :])
        names = {"engine": "lstm-engine", "onnxruntime": "onnxruntime",
                 **{k: p["label"] for k, p in peers.items()}}
        ticks, labels, measured = [], [], [c["seconds"] for c in cold if c.get("seconds")]
        marks = measured + [c["target_max_seconds"] for c in cold if c.get("target_max_seconds")]
        x_lo, x_hi = (min(marks) * 0.5, max(marks) * 2.5) if marks else (0.01, 10.0)
        for i, c in enumerate(cold):
            yy = GAP + i * BAR
            label = names.get(c["runtime"], c["runtime"]) + (f", {c['cache']} cache" if c.get("cache") else "")
            ticks.append(yy)
            labels.append(label)
            if c.get("seconds"):
                ax.barh(yy, c["seconds"], height=BAR * 0.85, color=COLD_COLOURS.get(c["runtime"], "#999999"))
                ax.text(c["seconds"] * 1.04, yy, f"{c['seconds']:.2f} s", va="center", ha="left", fontsize=11)
            else:
                text = c.get("status") or ("MISMATCH" if c["error"] and c["error"]["kind"] == "mismatch" else "ERROR")
                ax.text(x_lo * 1.1, yy, text, va="center", ha="left", fontsize=10, style="italic",
                        color="#777777")
            if c.get("target_max_seconds") is not None:
                ax.vlines(c["target_max_seconds"], yy - 0.45 * BAR, yy + 0.45 * BAR, colors="black", linewidth=2.0)
        ax.set_xscale("log")
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(GAP + (len(cold) - 1) * BAR + GAP, 0)
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels, fontsize=12)
        ax.tick_params(axis="x", labelsize=11)
        ax.grid(axis="x", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.set_xlabel("seconds from import to the first result (log scale, lower is faster)", fontsize=12)
        ax.set_title("Cold start: a fresh process, LSTM T=100 B=1 H=128, 1 thread", fontsize=13, loc="left")

    m = result["machine"]
    versions = m["versions"]
    handles = [Patch(color=c, label=label + (f" {peers[key]['version']}" if key in peers and peers[key]["version"]
                                             else "")) for key, label, c in series]
    handles += [Line2D([], [], color="#555555", linestyle="--", label=f"onnxruntime {versions['onnxruntime']} = 1.0"),
                Line2D([], [], color="black", linewidth=2.0, label="engine target")]
    # the title is the legend's: constrained layout then keeps the two from overlapping
    title = (f"lstm-engine{' and peers' if peers else ''} against onnxruntime, median time per call\n{m['cpu_model']}, "
             f"{m['available_cores']} cores, {m['memory_gib']} GiB, {result['created'][:16].replace('T', ' ')}")
    fig.legend(handles=handles, loc="outside upper center", ncol=3, fontsize=12, frameon=False, title=title,
               title_fontproperties={"size": 15, "weight": "bold"})
    if notes:
        ax = fig.add_subplot(grid[len(heights), :])
        ax.set_axis_off()
        ax.text(0.0, 1.0, "\n".join(notes), fontsize=11, color="#444444", ha="left", va="top",
                transform=ax.transAxes)
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
