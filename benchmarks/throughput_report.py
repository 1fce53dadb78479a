"""The markdown summary that benchmarks/throughput.py writes beside its JSON: per preset, every variant's training
and sampling speed against fp32 eager, then the summary, the oneDNN kernels and the profiler tables."""

from __future__ import annotations


def markdown(result: dict) -> str:
    lines = [
        "# CPU speed levers: SMT training cycle and one-step sampling",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']['processor']}, "
        f"{result['machine']['cpu_count']} CPUs, torch {result['machine']['torch']}, {result['machine']['threads']} "
        f"threads. Load average (1 min) before / after: {result['load_average_1min']}.",
        "",
        "All variants in one process, same weights, batches and draws, cycles alternating; ratios are medians "
        "against fp32 eager (the 0.1 path). `chosen` is the preset's own settings. Compile time is the first two "
        "cycles' excess over the median.",
        "",
    ]
    for r in result["presets"]:
        c = r["chosen"]
        lines += [
            f"## {r['preset']} networks ({', '.join(f'{k} {v / 1e6:.2f}M' for k, v in r['parameters'].items())}), "
            f"batch {r['batch']}, 1 generator + {r['critic_steps_per_cycle']} critic steps; sampling batch "
            f"{r['sampling_batch']}",
            "",
            f"Chosen: precision {c['precision']}, channels_last {c['channels_last']}, compile {c['compile']}.",
            "",
            "| variant | training images/s | training vs fp32 eager | compile s | sampling images/s | "
            "sampling vs fp32 eager | sampling max abs diff vs fp32 |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, t in r["training"].items():
            s = r["sampling"].get(name)
            samp = (
                (
                    f"{s['images_per_s']:.0f} | {s['speedup_vs_fp32_eager']:.2f}x | "
                    f"{r['sampling_max_abs_difference_vs_fp32'][name]:.3g}"
                )
                if s
                else "- | - | -"
            )
            lines.append(
                f"| {name} | {t['images_per_s']:.0f} | {t['speedup_vs_fp32_eager']:.2f}x | "
                f"{t['compile_s']:.1f} | {samp} |"
            )
        lines += [
            "",
            f"fp32 library vs plain reference losses: max relative difference "
            f"{r['fp32_library_vs_reference_max_relative_loss_difference']:.1e}.",
            "",
        ]
    lines += [
        "## Summary",
        "",
        f"- training, chosen vs fp32 eager: {result['speedup_vs_fp32_eager']}",
        f"- sampling, chosen vs fp32 eager: {result['sampling_speedup_vs_fp32_eager']}",
        f"- training, chosen vs the plain fp32 reference: {result['speedup_vs_plain_reference']}",
        "",
    ]
    if result.get("onednn_bf16_kernels"):
        lines += [
            "oneDNN implementations of a bf16 convolution (forward, backward) here: "
            + "; ".join(f"`{k}`" for k in result["onednn_bf16_kernels"]),
            "",
        ]
    for preset, tables in result.get("profile", {}).items():
        lines += [f"## Profile, {preset}: one training cycle (self CPU time)", ""]
        for name, table in tables.items():
            lines += [f"### {name}", "", "```", table.rstrip(), "```", ""]
    return "\n".join(lines)
