"""The Markdown report of one benchmark run (the JSON beside it holds every number)."""

from __future__ import annotations

from .gpu_memory import MEANING as GPU_MEMORY_MEANING

LABELS = {
    "nn_xp-cpu": "nn_xp (NumPy)",
    "nn_xp-cuda": "nn_xp (CuPy)",
    "nn_xp_mixed-cuda": "nn_xp mixed_float16 (CuPy)",
    "nn_xp_torch-cpu": "nn_xp (torch:cpu)",
    "nn_xp_torch-cuda": "nn_xp (torch:cuda)",
    "nn_xp_jax-cpu": "nn_xp (jax:cpu)",
    "nn_xp_jax-cuda": "nn_xp (jax:gpu)",
    "torch-cpu": "PyTorch eager (CPU)",
    "torch-cuda": "PyTorch eager (CUDA)",
    "torch_compile-cpu": "PyTorch torch.compile (CPU)",
    "torch_compile-cuda": "PyTorch torch.compile (CUDA)",
    "jax_jit-cpu": "JAX, jit step (CPU)",
    "jax_jit-cuda": "JAX, jit step (GPU)",
    "jax_scan-cpu": "JAX, jit + scan epoch (CPU)",
    "jax_scan-cuda": "JAX, jit + scan epoch (GPU)",
    "torch_amp-cuda": "PyTorch AMP float16 (CUDA)",
    "sklearn-cpu": "scikit-learn MLP",
    "floor-cpu": "matmul floor (CPU)",
    "floor-cuda": "matmul floor (GPU)",
    "floor_torch-cpu": "matmul floor, PyTorch's BLAS (CPU)",
    "floor_torch-cuda": "matmul floor, PyTorch's BLAS (GPU)",
    "floor_half-cuda": "matmul floor, float16 (GPU)",
}
# Issue 15's targets for mixed precision at workload (b): name in mixed_summary -> the least ratio.
GPU_MEMORY_PAIRS = (("nn_xp-cuda", "torch-cuda"), ("nn_xp_mixed-cuda", "torch_amp-cuda"))
MIXED_TARGETS = {"nn_xp_mixed_vs_nn_xp_float32": 2.0, "nn_xp_mixed_vs_torch_amp": 1.0}


def device_kind(name: str) -> str:
    return "cuda" if name.endswith("-cuda") else "cpu"


def floor_of(name: str) -> str:
    """The floor a system is measured against: float16's for the mixed-precision systems."""
    kind = device_kind(name)
    return f"floor_half-{kind}" if name.split("-")[0] in ("nn_xp_mixed", "torch_amp", "floor_half") else f"floor-{kind}"


def mixed_summary(systems: dict) -> dict:
    """Ratios of samples/s between the mixed-precision systems and the float32 ones of one workload
    (None where a system is missing), each system's % of the float16 matmul floor, and the targets."""
    def rate(name):
        return systems.get(name, {}).get("samples_per_s")

    def ratio(a, b):
        return rate(a) / rate(b) if rate(a) and rate(b) else None

    half_floor = systems.get("floor_half-cuda", {}).get("median_s")
    out = {
        "nn_xp_mixed_vs_nn_xp_float32": ratio("nn_xp_mixed-cuda", "nn_xp-cuda"),
        "nn_xp_mixed_vs_torch_amp": ratio("nn_xp_mixed-cuda", "torch_amp-cuda"),
        "torch_amp_vs_torch_float32": ratio("torch_amp-cuda", "torch-cuda"),
        "nn_xp_mixed_vs_torch_float32": ratio("nn_xp_mixed-cuda", "torch-cuda"),
        "percent_of_half_floor": {
            name: 100 * half_floor / systems[name]["median_s"]
            for name in ("nn_xp_mixed-cuda", "torch_amp-cuda")
            if half_floor and systems.get(name, {}).get("median_s")
        },
        "last_loss": {name: systems.get(name, {}).get("last_loss")
                      for name in ("nn_xp-cuda", "nn_xp_mixed-cuda", "torch-cuda", "torch_amp-cuda")},
        "targets": dict(MIXED_TARGETS),
    }
    out["meets"] = {key: (out[key] >= least if out[key] is not None else None)
                    for key, least in MIXED_TARGETS.items()}
    return out


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
        floor = systems.get(floor_of(name), {})
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
        f"{m['versions'].get('sklearn')}" + (f" · jax {m['versions']['jax']}" if m["versions"].get("jax") else "")
        + f" · nn_xp {m['versions'].get('nn_xp')} (source sha256 "
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
    skips = {}  # the same reason in several workloads (a library nn_xp lacks) is said once
    for key, result in results["workloads"].items():
        for name, message in result.get("skipped", {}).items():
            skips.setdefault((name, message), []).append(key)
    for (name, message), keys in skips.items():
        where = "every workload" if len(keys) > 1 and len(keys) == len(results["workloads"]) else \
            " ".join(f"({key})" for key in keys)
        lines.append(f"\n{where}: {LABELS.get(name, name)} skipped: {message}" if len(keys) > 1 else
                     f"\n({keys[0]}) {LABELS.get(name, name)} skipped: {message}")
    lines += [
        "",
        "Notes: all systems train float32 (but for the mixed-precision rows, see below) with Adam (learning "
        "rate 1e-3, betas (0.9, 0.999), eps 1e-8) at "
        "the batch size shown; ms / epoch is the same median per epoch. nn_xp (on every array library), PyTorch "
        "(eager and compiled) and JAX start from the same weights and see the same batches in the same order. "
        "scikit-learn is timed only: it uses its own initialisation and shuffling, "
        "alpha=0 (no L2), restarts Adam's moments at each warm-started `fit` call, computes its loss on "
        "the host every batch, and for (c) its MLPRegressor has a linear output (no sigmoid). "
        "Epochs per timed call: "
        + ", ".join(f"({key}) {result['workload']['epochs_per_call']}" for key, result in results["workloads"].items())
        + "." + (" GPU systems only (--gpu-only)." if cfg.get("gpu_only") else ""),
        "",
    ]
    lines += mixed_section(results)
    lines += compile_section(results)
    lines += parity_section(results)
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

    for memory in (results.get("memory"), results.get("memory_mixed")):
        lines += memory_section(memory)

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
    lines += ["", f"Total run time {results.get('total_seconds', 0):.0f} s."
              + (" PARTIAL: the run stopped before it finished; the workloads above are complete." if
                 results.get("partial") else "")]
    return "\n".join(lines) + "\n"


def mixed_section(results: dict) -> list:
    """The mixed-precision comparison of each workload that has one (GPU runs), with its targets."""
    lines = []
    for key, result in results["workloads"].items():
        mixed = result.get("mixed")
        if not mixed:
            continue
        floor = mixed.get("percent_of_half_floor", {})
        loss = mixed.get("last_loss", {})

        def verdict(name, mixed=mixed):
            met = mixed.get("meets", {}).get(name)
            return "" if met is None else (" (target met)" if met else " (target missed)")

        lines += [
            f"## Mixed precision, workload ({key})", "",
            "nn_xp `fit(..., precision=\"mixed_float16\")` (float32 master weights and Adam state, float16 "
            "products, dynamic loss scaling) and PyTorch AMP (`torch.autocast(\"cuda\", dtype=torch.float16)` "
            "around forward and loss, `torch.amp.GradScaler` with its defaults), from the same weights on the same "
            "batches as the float32 rows, Adam as above. % of float16 floor: the same matmuls timed alone in "
            "float16 with CuPy.", "",
            "| ratio | value | target |",
            "| --- | ---: | ---: |",
            f"| nn_xp mixed_float16 / nn_xp float32 | {_cell(mixed.get('nn_xp_mixed_vs_nn_xp_float32'), '{:.2f}')}"
            f"{verdict('nn_xp_mixed_vs_nn_xp_float32')} | >= {MIXED_TARGETS['nn_xp_mixed_vs_nn_xp_float32']:g} |",
            f"| nn_xp mixed_float16 / PyTorch AMP | {_cell(mixed.get('nn_xp_mixed_vs_torch_amp'), '{:.2f}')}"
            f"{verdict('nn_xp_mixed_vs_torch_amp')} | >= {MIXED_TARGETS['nn_xp_mixed_vs_torch_amp']:g} |",
            f"| PyTorch AMP / PyTorch float32 | {_cell(mixed.get('torch_amp_vs_torch_float32'), '{:.2f}')} | |",
            f"| nn_xp mixed_float16 / PyTorch float32 "
            f"| {_cell(mixed.get('nn_xp_mixed_vs_torch_float32'), '{:.2f}')} | |",
            f"| nn_xp mixed_float16, % of float16 floor | {_cell(floor.get('nn_xp_mixed-cuda'), '{:.0f}%')} | |",
            f"| PyTorch AMP, % of float16 floor | {_cell(floor.get('torch_amp-cuda'), '{:.0f}%')} | |",
            "",
            "Last epoch's training loss (a sanity check that all four trained alike; they ran the same number of "
            "epochs unless a call was retaken): "
            + ", ".join(f"{LABELS.get(name, name)} {_cell(value, '{:.4f}')}" for name, value in loss.items()) + ".",
            "",
        ]
    return lines


def memory_section(memory) -> list:
    """Peak memory of one workload's epoch, one fresh process per system: host RSS, and GPU figures."""
    if not memory:
        return []
    systems = memory["systems"]
    gpu = any("gpu_peak_mb" in r for r in systems.values())
    lines = ["", f"## Peak memory, workload ({memory['workload']}), one epoch in a fresh process", "",
             "RSS after imports and data creation; peak RSS (VmHWM) after one training epoch"
             + (", the peak reset after setup via /proc/self/clear_refs" if memory.get("peak_reset") else "")
             + "; increment = peak - RSS after setup: what training itself adds (model, optimizer "
             "state, any shuffled copy of the data, activations). ru_maxrss is in the JSON too, but "
             "in a child made by fork+exec it starts at the parent's RSS, so it is not used here."
             + (" " + GPU_MEMORY_MEANING if gpu else ""),
             "",
             "| system | RSS after setup (MB) | peak RSS (MB) | increment (MB) |"
             + (" GPU after setup (MB) | GPU peak (MB) | GPU held (MB) | GPU device used (MB) |" if gpu else ""),
             "| --- | ---: | ---: | ---: |" + (" ---: | ---: | ---: | ---: |" if gpu else "")]
    for name, r in systems.items():
        if "error" in r:
            lines.append(f"| {LABELS.get(name, name)} | failed: {r['error'][:80]} | | |" + (" | | | |" if gpu else ""))
            continue
        row = (f"| {LABELS.get(name, name)} | {r['rss_after_setup_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
               f"{r['increment_mb']:.0f} |")
        if gpu:  # only a GPU run has these columns: the CPU report keeps its old shape
            row += (f" {_cell(r.get('gpu_after_setup_mb'), '{:.0f}')} | {_cell(r.get('gpu_peak_mb'), '{:.0f}')} | "
                    f"{_cell(r.get('gpu_held_mb'), '{:.0f}')} | {_cell(r.get('gpu_device_used_mb'), '{:.0f}')} |")
        lines.append(row)
    for ours, theirs in GPU_MEMORY_PAIRS:
        a, b = systems.get(ours, {}), systems.get(theirs, {})
        if a.get("gpu_peak_mb") and b.get("gpu_peak_mb"):
            lines.append(f"\n{LABELS[ours]} / {LABELS[theirs]}: GPU peak {a['gpu_peak_mb'] / b['gpu_peak_mb']:.2f}, "
                         f"GPU held {_ratio(a.get('gpu_held_mb'), b.get('gpu_held_mb'))} "
                         "(target: no more than PyTorch's, <= 1).")
    return lines


def compile_section(results: dict) -> list:
    """The compiled systems' compile seconds, which the timed calls leave out."""
    rows = [(key, name, record) for key, result in results["workloads"].items()
            for name, record in result["systems"].items() if record.get("compile_s") is not None]
    if not rows:
        return []
    lines = [
        "## Compilation (not in the timed calls)", "",
        "JAX: `jax.jit(...).lower(...).compile()` of the step (one per batch shape: the full batches' and the "
        "last partial one's) or of the whole epoch, timed ahead of the first call. torch.compile: the first "
        "call of the compiled step for each batch shape (compiling, and that one step). The warm-up call (one "
        "timed call's work, run once before the timed calls) comes after the JAX compilation and includes "
        "torch.compile's.", "",
        "| workload | system | compile s | warm-up call s | median timed call s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for key, name, r in rows:
        lines.append(f"| ({key}) | {LABELS.get(name, name)} | {r['compile_s']:.2f} | "
                     f"{_cell(r.get('warmup_s'), '{:.3f}')} | {_cell(r.get('median_s'), '{:.3f}')} |")
    return lines + [""]


def parity_section(results: dict) -> list:
    """Each system against PyTorch eager from the same weights on the same batches."""
    lines = [
        "## Do the systems compute the same thing as PyTorch eager?",
        "",
        "Each system against PyTorch eager on its kind of device, from the same initial weights, 3 Adam steps "
        "on the same shuffled batches, in float64 (the systems on JAX in float32, unless JAX's process-wide "
        "x64 switch is on; float32 rounding, which Adam turns into differences of up to the learning rate in "
        "parameters whose gradient is near zero, puts their figures far above float64's); largest relative "
        "parameter difference max|a-b|/max|b| over all parameters (float64: expect ~1e-12), the largest "
        "difference as a fraction of how far PyTorch's parameters moved (max|a-b|/max|b-b0|; so a small difference "
        "cannot mean that nothing happened), and the mean training loss of those steps.",
        "",
        "| workload | system | dtype | same initial weights | max relative difference | difference / update "
        "| loss | loss torch |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, result in results["workloads"].items():
        for name, p in result.get("parity", {}).items():
            if "error" in p:
                lines.append(f"| ({key}) | {LABELS.get(name, name)} | {p.get('dtype', '')} | failed: "
                             f"{p['error'][:80]} | | | | |")
                continue
            loss = p.get("loss", p.get("loss_nn_xp"))  # results before 2026-12-05 named it loss_nn_xp
            same = {True: "yes", False: "NO"}.get(p.get("same_initial_weights"), "–")
            lines.append(
                f"| ({key}) | {LABELS.get(name, name)} | {p.get('dtype', 'float64')} | {same} | "
                f"{p['max_relative_parameter_difference']:.1e} | {p['max_difference_over_update']:.1e} | "
                f"{loss:.6f} | {p['loss_torch']:.6f} |"
            )
    return lines
