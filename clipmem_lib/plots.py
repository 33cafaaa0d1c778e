"""Figures of the paper, redrawn with seaborn from score tables (one function per figure)."""
from __future__ import annotations

import base64
import io
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .data import PairData

__all__ = ["subset_distributions", "clean_vs_poisoned", "gallery", "alignment_scatter", "metric_comparison",
           "memorisation_vs_frequency", "pair_explorer", "unitmem_per_layer", "unitmem_tracking",
           "memorisation_and_utility", "removal_curves", "settings_comparison"]

SUBSET_ORDER = ["S_S", "S_C", "S_I", "S_E"]
PALETTE = dict(zip(SUBSET_ORDER, sns.color_palette("colorblind", 4)))


def subset_distributions(scores: pd.DataFrame, column: str = "clipmem", ax=None):
    """Fig. 2a: the distribution of CLIPMem per subset (S_C high, S_S ≈ S_E ≈ 0, S_I negative)."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    sns.violinplot(data=scores, x="subset", y=column, hue="subset", order=SUBSET_ORDER, palette=PALETTE,
                   cut=0, inner="quartile", ax=ax, legend=False)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="", ylabel="CLIPMem (normalised)" if column == "clipmem" else column,
           title="CLIPMem by subset (cf. paper Fig. 2a)")
    return ax


def clean_vs_poisoned(means: pd.DataFrame, ax=None):
    """Fig. 2b: mean CLIPMem of clean S_C (clean model, poisoned model) and of the mis-captioned pairs.

    ``means`` has columns ``model``, ``group`` and ``clipmem``.
    """
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    sns.barplot(data=means, x="model", y="clipmem", hue="group", palette="colorblind", ax=ax)
    for c in ax.containers:
        ax.bar_label(c, fmt="%.3f", fontsize=8)
    ax.set(xlabel="", ylabel="mean CLIPMem on S_C", title="Clean vs. poisoned model (cf. paper Fig. 2b)")
    return ax


def _img(data: PairData, i: int, size: int = 64) -> np.ndarray:
    return data.images.load(int(i), 0, size).permute(1, 2, 0).numpy()


def gallery(data: PairData, scores: pd.DataFrame, k: int = 5, column: str = "clipmem", subset: str = "S_C"):
    """Fig. 1: the ``k`` most and ``k`` least memorised pairs of ``subset``, with caption and score."""
    s = scores[scores.subset == subset].sort_values(column, ascending=False)
    rows = [("most memorised", s.head(k)), ("least memorised", s.iloc[(s[column].abs()).argsort()[:k]])]
    fig, axes = plt.subplots(2, k, figsize=(2.3 * k, 6.6), squeeze=False)
    for r, (title, part) in enumerate(rows):
        for c, (_, row) in enumerate(part.iterrows()):
            ax = axes[r, c]
            ax.imshow(_img(data, row["index"]), interpolation="nearest")
            cap = data.captions[int(row["index"])][0]
            flag = " [mis-captioned]" if row.get("is_miscaptioned", False) in (True, "True") else ""
            ax.set_title(f"{row[column]:.2f}{flag}", fontsize=9)
            ax.set_xlabel("\n".join(textwrap.wrap(textwrap.shorten(cap, 84, placeholder=" …"), 28)), fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=10)
    fig.suptitle(f"Most and least memorised pairs of {subset} (cf. paper Fig. 1)")
    fig.tight_layout()
    return fig


def alignment_scatter(scores: pd.DataFrame, ax=None):
    """Sec. 3: alignment under f against under g. Shared pairs lie on the diagonal however well they
    are aligned; only pairs that f alone trained on (S_C) rise above it. Hence Eq. 4 subtracts g."""
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    sns.scatterplot(data=scores, x="align_g", y="align_f", hue="subset", hue_order=SUBSET_ORDER, palette=PALETTE,
                    s=10, alpha=0.6, ax=ax)
    lo, hi = scores[["align_f", "align_g"]].min().min(), scores[["align_f", "align_g"]].max().max()
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set(xlabel="A_align(g, I, T)", ylabel="A_align(f, I, T)", title="Alignment under f vs. g (Eq. 3)")
    return ax


def metric_comparison(table: pd.DataFrame, columns: dict[str, str],
                      title: str = "Single-modality SSLMem vs. CLIPMem on S_C and S_S (cf. paper Fig. 3)"):
    """Fig. 3: S_C vs S_S distributions of several scores side by side (e.g. SSLMem image/text, CLIPMem)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.4), sharey=False)
    part = table[table.subset.isin(["S_S", "S_C"])]
    for ax, (col, title) in zip(np.atleast_1d(axes), columns.items()):
        sns.histplot(data=part, x=col, hue="subset", hue_order=["S_S", "S_C"], palette=PALETTE, stat="density",
                     common_norm=False, element="step", bins=30, ax=ax)
        ax.set(title=title, xlabel="score (normalised)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def memorisation_vs_frequency(scores: pd.DataFrame, subset: str = "S_C", ax=None):
    """Built-in data only: CLIPMem against how often the pair's concept occurs in the data (the long tail)."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    part = scores[scores.subset == subset].copy()
    part["concept seen"] = pd.cut(part.concept_count, [0, 1, 2, 4, 8, 16, 10**9],
                                  labels=["1", "2", "3–4", "5–8", "9–16", ">16"])
    sns.boxplot(data=part, x="concept seen", y="clipmem", color=PALETTE[subset], ax=ax)
    ax.set(xlabel="occurrences of the pair's concept in the dataset", ylabel="CLIPMem",
           title=f"Rare concepts are memorised ({subset})")
    return ax


def unitmem_per_layer(table: pd.DataFrame, ax=None):
    """Fig. 4: mean UnitMem per layer, one line per model (``table``: model, layer, unitmem per unit)."""
    ax = ax or plt.subplots(figsize=(6, 3.6))[1]
    sns.lineplot(data=table, x="layer", y="unitmem", hue="model", style="model", markers=True, dashes=False,
                 errorbar=("ci", 95), ax=ax)
    ax.set(xticks=sorted(table.layer.unique()), xlabel="transformer block", ylabel="mean UnitMem",
           title="UnitMem per layer (cf. paper Fig. 4)")
    return ax


def unitmem_tracking(track: pd.DataFrame):
    """Fig. 11: share of the top 1/3/5% UnitMem units in each layer, along training."""
    g = sns.relplot(data=track, x="epoch", y="share", hue="layer", col="top_percent", kind="line", marker="o",
                    palette="viridis", height=3, aspect=1.1)
    g.set_titles("top {col_name}% units")
    g.set_axis_labels("epoch", "share of the top units")
    g.figure.suptitle("Where the most memorising units sit during CLIP training (cf. paper Fig. 11)", y=1.04)
    return g


def pair_explorer(data: PairData, scores: pd.DataFrame, column: str = "clipmem"):
    """An ipywidgets browser of pairs ranked by ``column`` per subset (live kernel; the saved state
    renders in the static book)."""
    import ipywidgets as w
    from PIL import Image

    subset = w.Dropdown(options=SUBSET_ORDER, value="S_C", description="subset")
    rank = w.IntSlider(value=0, min=0, max=49, description="rank")
    view = w.HTML()

    def show(*_):
        part = scores[scores.subset == subset.value].sort_values(column, ascending=False)
        rank.max = max(0, len(part) - 1)
        row = part.iloc[min(rank.value, len(part) - 1)]
        buf = io.BytesIO()
        Image.fromarray(_img(data, row["index"], 128)).save(buf, format="PNG")
        caps = "".join(f"<li>{c}</li>" for c in data.captions[int(row['index'])])
        view.value = (f"<img src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}' width=128 "
                      f"style='image-rendering:pixelated'/><p><b>{column} = {row[column]:.3f}</b> "
                      f"(rank {rank.value + 1} of {len(part)} in {subset.value}; pair {int(row['index'])}"
                      f"{', mis-captioned' if row.get('is_miscaptioned') in (True, 'True') else ''})</p><ol>{caps}</ol>")

    subset.observe(show, "value")
    rank.observe(show, "value")
    show()
    return w.VBox([w.HBox([subset, rank]), view])


def memorisation_and_utility(table: pd.DataFrame, x: str, memorisation: str = "clipmem", utility: str = "lp_acc",
                             *, err: str | None = "lp_std", xlabel: str | None = None, title: str = "", ax=None):
    """Fig. 5a / 5b: memorisation (left axis) and utility (right axis) against one swept setting."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    t = table.sort_values(x)
    c_mem, c_ut = sns.color_palette("colorblind", 2)
    ax.plot(t[x], t[memorisation], "o-", color=c_mem)
    ax.set_ylabel(f"mean {memorisation} on S_C", color=c_mem)
    ax.set_xlabel(xlabel or x)
    right = ax.twinx()
    right.errorbar(t[x], t[utility], yerr=t[err] if err else None, fmt="s--", color=c_ut, capsize=3)
    right.set_ylabel(utility, color=c_ut)
    ax.set_title(title)
    return ax, right


def removal_curves(curve: pd.DataFrame, metric: str = "utility", *, planted: str | None = "planted_removed",
                   title: str = "", axes=None):
    """Fig. 6: utility after removing k pairs and retraining, one line per strategy (log2 k axis); with
    ``planted``, a second panel counts the planted mis-captions each strategy removed."""
    panels = 2 if planted and planted in curve else 1
    axes = axes if axes is not None else plt.subplots(1, panels, figsize=(6 * panels, 3.5), squeeze=False)[1][0]
    pos, ks = curve[curve.k > 0], sorted(curve[curve.k > 0].k.unique())
    columns = [(metric, metric), (planted, "planted mis-captions removed")][:panels]
    for i, (ax, (col, label)) in enumerate(zip(axes, columns)):
        sns.lineplot(data=pos, x="k", y=col, hue="strategy", style="strategy", markers=True, dashes=False, ax=ax,
                     legend=i == 0)
        ax.set(xscale="log", xlabel="pairs removed (k)", ylabel=label)
        ax.set_xticks(ks, [str(k) for k in ks])
    axes[0].axhline(curve.loc[curve.k == 0, metric].iloc[0], color="grey", lw=0.8, ls=":", label="no removal")
    axes[0].set_title(title or "Removal and retraining (cf. Fig. 6)")
    return axes


def settings_comparison(table: pd.DataFrame, columns: dict[str, str], *, label: str = "setting",
                        errors: dict[str, str] | None = None, title: str = ""):
    """Table 1 / Table 3 as bars: one panel per column (e.g. CLIPMem, LP accuracy), one bar per setting."""
    errors = errors or {}
    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 0.5 * len(table) + 1.5), squeeze=False)
    colours = sns.color_palette("colorblind", len(table))
    for ax, (col, name) in zip(axes[0], columns.items()):
        ax.barh(table[label], table[col], xerr=table[errors[col]] if col in errors else None, color=colours, capsize=3)
        ax.invert_yaxis()
        ax.set(xlabel=name, ylabel="")
        lo, hi = table[col].min(), table[col].max()
        if lo > 0:  # zoom on the differences, as the paper's tables are read
            ax.set_xlim(max(0, lo - (hi - lo) * 1.5 - 0.01), hi + (hi - lo) * 0.5 + 0.01)
    for ax in axes[0][1:]:
        ax.set_yticklabels([])
    fig.suptitle(title)
    fig.tight_layout()
    return axes[0]
