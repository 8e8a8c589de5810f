"""The compare figure: measured throughput (train, or inference per runtime) and counted MACs per variant
(matplotlib, optional)."""

from __future__ import annotations

import textwrap


def plot_compare(rows: list, path: str, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    infer = any(r.mode == "infer" for r in rows)
    labels = [r.label + (f"\n{r.runtime}" if infer else "") for r in rows]
    x = range(len(rows))
    speed = [(r.infer_imgs_per_s if infer else r.train_imgs_per_s) or 0 for r in rows]
    low = [max(0.0, s - (r.imgs_per_s_min or s)) for s, r in zip(speed, rows, strict=True)]
    high = [(r.imgs_per_s_max or s) - s for s, r in zip(speed, rows, strict=True)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    ax1.bar(x, speed, yerr=[low, high], capsize=4, color="#4c72b0", label="measured (median, min–max)")
    paper = [None if infer else (r.paper or {}).get("v100_imgs_per_s") for r in rows]  # the paper's are train speeds
    if any(paper) and speed[0] and paper[0]:
        # The paper's V100 speed relative to its first row, drawn on our first row's scale.
        scaled = [p / paper[0] * speed[0] if p else None for p in paper]
        ax1.plot([i for i, s in zip(x, scaled, strict=True) if s], [s for s in scaled if s], "o--",
                 color="#dd8452", label="paper V100, relative to its first row")
    for i, r in enumerate(rows):
        if r.status != "ok":
            ax1.text(i, 0, r.status.upper(), ha="center", va="bottom", color="red")
    ax1.set_xticks(list(x), labels, rotation=15)
    ax1.set_ylabel("infer imgs/s" if infer else "train imgs/s")
    ax1.set_title(("Inference" if infer else "Training") + " throughput (higher is better)")
    ax1.legend(fontsize=8)
    macs = [r.macs / 1e9 for r in rows]
    ax2.bar(x, macs, color="#55a868")
    ax2.set_xticks(list(x), labels, rotation=15)
    ax2.set_ylabel("GMACs per image (run size)")
    ax2.set_title("Multiply-accumulates per image")
    for i, r in enumerate(rows):
        ax2.text(i, macs[i], f"{r.params / 1e6:.1f}M params", ha="center", va="bottom", fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap(subtitle, 130)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
