"""The Markdown report of one benchmark run (the JSON beside it holds every number)."""

from __future__ import annotations

LABELS = {
    "nn_xp-cpu": "nn_xp (NumPy)",
    "nn_xp-cuda": "nn_xp (CuPy)",
    "torch-cpu": "PyTorch eager (CPU)",
    "torch-cuda": "PyTorch eager (CUDA)",
    "sklearn-cpu": "scikit-learn MLP",
    "floor-cpu": "matmul floor (CPU)",
    "floor-cuda": "matmul floor (GPU)",
    "floor_torch-cpu": "matmul floor, PyTorch's BLAS (CPU)",
    "floor_torch-cuda": "matmul floor, PyTorch's BLAS (GPU)",
}


def device_kind(name: str) -> str:
    return "cuda" if name.endswith("-cuda") else "cpu"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def _fmt_rate(value) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def workload_rows(result: dict) -> list[dict]:
    """One row per system (the matmul floors included): samples/s, ms per epoch, ratios, % of floor."""
    epochs = result["workload"]["epochs_per_call"]
    systems = result["systems"]
    rate = {name: s.get("samples_per_s") for name, s in systems.items()}
    rows = []
    for name, s in systems.items():
        kind = device_kind(name)
        floor = systems.get(f"floor-{kind}", {})
        torch_rate, sklearn_rate = rate.get(f"torch-{kind}"), rate.get("sklearn-cpu")
        rows.append({
            "system": name,
            "label": LABELS.get(name, name),
            "samples_per_s": rate[name],
            "ms_per_epoch": 1e3 * s["median_s"] / epochs if s.get("median_s") else None,
            "vs_torch": rate[name] / torch_rate if rate[name] and torch_rate else None,
            "vs_sklearn": rate[name] / sklearn_rate if rate[name] and sklearn_rate else None,
            "percent_of_floor": (100 * floor["median_s"] / s["median_s"]
                                 if s.get("median_s") and floor.get("median_s") else None),
            "other_load": s.get("median_other_load"),
            "error": s.get("error"),
        })
    return rows


def _cell(value, fmt) -> str:
    return "–" if value is None else fmt.format(value)


def markdown(results: dict) -> str:
    m = results["machine"]
    cfg = results["config"]
    lines = [
        f"# nn_xp training benchmark ({cfg['device']}{', quick' if cfg['quick'] else ''})",
        "",
        f"{m['date']} · {m['cpu_model']} · {m['logical_cores']} logical cores · "
        f"BLAS {m['blas'].get('internal_api', '?')} {m['blas'].get('version', '')} "
        f"with {m['threads']['numpy_blas']} threads ({m['threads']['source']}); torch threads "
        f"{m['threads'].get('torch')} · load average {m['loadavg_start'][0]:.2f} at start, "
        f"{m.get('loadavg_end', [float('nan')])[0]:.2f} at end",
        "",
        f"numpy {m['versions'].get('numpy')} · torch {m['versions'].get('torch')} · scikit-learn "
        f"{m['versions'].get('sklearn')} · nn_xp {m['versions'].get('nn_xp')} (source sha256 "
        f"{m.get('nn_xp_source_sha256', '?')[:12]}) · Python {m['python']}"
        + (f" · GPU {m['gpu']}" if m.get("gpu") else ""),
        "",
        f"Median of {cfg['repeats']} timed calls per system (of those with other load <= "
        f"{cfg.get('max_other_load', 0.25)} when at least half are), systems alternating within each "
        "repetition (order rotated per repetition), after one warm-up call each. Ratios > 1 mean "
        "faster than the reference (torch on the same device; scikit-learn on the CPU). "
        "% of floor = matmul-floor time / system time; the floor is nn_xp's (the same matmuls timed "
        "alone with NumPy's BLAS, or CuPy's), and 'PyTorch's BLAS' times them with torch.matmul. "
        "'Other load' is the median number of cores "
        "that other processes on the machine kept busy during the system's timed calls (a call above "
        f"{cfg.get('max_other_load', 0.25)} was retaken up to {cfg.get('max_retakes', 2)} times).",
        "",
        "| workload | system | median samples/s | ms / epoch | ratio vs torch | ratio vs sklearn "
        "| % of floor | other load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, result in results["workloads"].items():
        w = result["workload"]
        for index, row in enumerate(workload_rows(result)):
            name = f"({key}) {w['title']}, n={w['n_samples']:,}" if index == 0 else f"({key})"
            if row["error"]:
                lines.append(f"| {name} | {row['label']} | failed: {row['error'][:80]} | | | | | |")
                continue
            lines.append(
                f"| {name} | {row['label']} | {_fmt_rate(row['samples_per_s'])} | "
                f"{_cell(row['ms_per_epoch'], '{:,.1f}')} | {_cell(row['vs_torch'], '{:.2f}')} | "
                f"{_cell(row['vs_sklearn'], '{:.2f}')} | {_cell(row['percent_of_floor'], '{:.0f}%')} | "
                f"{_cell(row['other_load'], '{:.2f}')} |"
            )
    for key, result in results["workloads"].items():
        for name, message in result.get("skipped", {}).items():
            lines.append(f"\n({key}) {LABELS.get(name, name)} skipped: {message}")
    lines += [
        "",
        "Notes: all systems train float32 with Adam (learning rate 1e-3, betas (0.9, 0.999), eps 1e-8) at "
        "the batch size shown; ms / epoch is the same median per epoch. nn_xp and PyTorch start from the "
        "same weights and see the same batches "
        "in the same order. scikit-learn is timed only: it uses its own initialisation and shuffling, "
        "alpha=0 (no L2), restarts Adam's moments at each warm-started `fit` call, computes its loss on "
        "the host every batch, and for (c) its MLPRegressor has a linear output (no sigmoid). "
        "Epochs per timed call: "
        + ", ".join(f"({key}) {result['workload']['epochs_per_call']}" for key, result in results["workloads"].items())
        + "." + (" GPU systems only (--gpu-only)." if cfg.get("gpu_only") else ""),
        "",
        "## Do nn_xp and PyTorch compute the same thing?",
        "",
        "float64, the same initial weights, 3 Adam steps on the same shuffled batches; largest relative "
        "parameter difference max|a-b|/max|b| over all parameters (expect ~1e-12), and the largest "
        "difference as a fraction of how far the parameters moved (max|a-b|/max|a-a0|; so a small "
        "difference cannot mean that nothing happened).",
        "",
        "| workload | devices | max relative difference | difference / update | loss nn_xp | loss torch |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, result in results["workloads"].items():
        for kind, p in result.get("parity", {}).items():
            if "error" in p:
                lines.append(f"| ({key}) | {kind} | failed: {p['error'][:80]} | | | |")
                continue
            lines.append(
                f"| ({key}) | {p['nnxp_device']} / {p['torch_device']} | "
                f"{p['max_relative_parameter_difference']:.1e} | "
                f"{p['max_difference_over_update']:.1e} | {p['loss_nn_xp']:.6f} | {p['loss_torch']:.6f} |"
            )
    lines += ["", "## Matmul context", "",
              "| workload | GFLOP / epoch | floor ms / epoch | floor GFLOP/s | PyTorch's BLAS floor GFLOP/s "
              "| nn_xp GFLOP/s | torch GFLOP/s |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, result in results["workloads"].items():
        flops = result["flops_per_epoch"]["total"]
        epochs = result["workload"]["epochs_per_call"]
        systems = result["systems"]
        def gflops(s, flops=flops, epochs=epochs):
            return flops * epochs / s["median_s"] / 1e9 if s.get("median_s") else None
        for kind in ("cpu", "cuda"):
            floor = systems.get(f"floor-{kind}")
            if not floor or not floor.get("median_s"):
                continue
            lines.append(
                f"| ({key}) {kind} | {flops / 1e9:.3f} | {1e3 * floor['median_s'] / epochs:.2f} | "
                f"{_cell(gflops(floor), '{:.1f}')} | "
                f"{_cell(gflops(systems.get(f'floor_torch-{kind}', {})), '{:.1f}')} | "
                f"{_cell(gflops(systems.get(f'nn_xp-{kind}', {})), '{:.1f}')} | "
                f"{_cell(gflops(systems.get(f'torch-{kind}', {})), '{:.1f}')} |"
            )
    for g in results.get("square_gemm", []):
        lines.append(f"\nLarge square sgemm ({g['device']}, {g['size']}x{g['size']} {g['dtype']}): "
                     f"{g['gflops']:.1f} GFLOP/s.")

    memory = results.get("memory")
    if memory:
        lines += ["", f"## Peak memory, workload ({memory['workload']}), one epoch in a fresh process", "",
                  "RSS after imports and data creation; peak RSS (VmHWM) after one training epoch"
                  + (", the peak reset after setup via /proc/self/clear_refs" if memory.get("peak_reset") else "")
                  + "; increment = peak - RSS after setup: what training itself adds (model, optimizer "
                  "state, any shuffled copy of the data, activations). ru_maxrss is in the JSON too, but "
                  "in a child made by fork+exec it starts at the parent's RSS, so it is not used here.",
                  "",
                  "| system | RSS after setup (MB) | peak RSS (MB) | increment (MB) | GPU peak (MB) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, r in memory["systems"].items():
            if "error" in r:
                lines.append(f"| {LABELS.get(name, name)} | failed: {r['error'][:80]} | | | |")
                continue
            lines.append(
                f"| {LABELS.get(name, name)} | {r['rss_after_setup_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                f"{r['increment_mb']:.0f} | {_cell(r.get('gpu_peak_mb'), '{:.0f}')} |"
            )

    scaling = results.get("scaling")
    if scaling:
        for table, title, column in (("samples", "number of samples", "n_samples"),
                                     ("width", "hidden width w", "width")):
            rows = scaling.get(table, [])
            if not rows:
                continue
            first = rows[0]
            lines += ["", f"## Scaling with {title} (CPU, {first['description']}, batch {first['batch_size']})", "",
                      f"| {column} | nn_xp s / epoch | torch s / epoch | nn_xp speed vs torch |",
                      "| ---: | ---: | ---: | ---: |"]
            for row in rows:
                a, b = row.get("nn_xp-cpu"), row.get("torch-cpu")
                lines.append(f"| {row[column]} | {_cell(a, '{:.3f}')} | {_cell(b, '{:.3f}')} | {_ratio(b, a)} |")
    lines += ["", f"Total run time {results.get('total_seconds', 0):.0f} s."]
    return "\n".join(lines) + "\n"
