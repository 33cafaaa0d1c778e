"""Figures of the paper, redrawn with seaborn from score tables (one function per figure).

Importing this module applies :data:`BOOK_STYLE`, the one look of the whole book; every figure is
:data:`WIDTH` inches wide for one panel and at most :data:`MAX_WIDTH` for several.
"""
from __future__ import annotations

import base64
import html
import io
import math
import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import HTML
from matplotlib.ticker import NullLocator

from .clipmem import SUBSET_ORDER
from .data import PairData
from .runtime import timed

__all__ = ["BOOK_STYLE", "WIDTH", "MAX_WIDTH", "subset_distributions", "score_histograms", "clean_vs_poisoned", "gallery",
           "alignment_scatter", "metric_comparison", "memorisation_vs_frequency", "pair_explorer", "pair_table",
           "unitmem_per_layer", "unitmem_tracking", "memorisation_and_utility", "removal_curves", "caption_similarity",
           "settings_comparison", "forest", "detection_benchmark", "noise_over_training", "image_data_uri"]

BOOK_STYLE = dict(context="notebook", style="whitegrid", palette="colorblind",
                  rc={"figure.dpi": 100, "savefig.dpi": 100, "font.size": 11, "axes.titlesize": 12,
                      "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10,
                      "legend.title_fontsize": 10, "figure.titlesize": 13})
sns.set_theme(**BOOK_STYLE)

WIDTH, MAX_WIDTH, HEIGHT = 7.5, 10.0, 3.6  # inches: one panel, several panels, one row of panels
PALETTE = dict(zip(SUBSET_ORDER, sns.color_palette("colorblind", 4)))
CAPTION_SIZE, CAPTION_CHARS = 10, 22  # gallery captions: points, characters per line


def _panels(ncols: int = 1, height: float = HEIGHT):
    """A figure of one row of ``ncols`` panels in the book's widths; returns (figure, 1-d array of axes)."""
    fig, axes = plt.subplots(1, ncols, figsize=(WIDTH if ncols == 1 else MAX_WIDTH, height), squeeze=False)
    return fig, axes[0]


@timed("plotting")
def subset_distributions(scores: pd.DataFrame, column: str = "clipmem", ax=None):
    """Fig. 2a: the distribution of CLIPMem per subset (S_C high, S_S ≈ S_E ≈ 0, S_I negative)."""
    ax = ax or _panels()[1][0]
    sns.violinplot(data=scores, x="subset", y=column, hue="subset", order=SUBSET_ORDER, palette=PALETTE,
                   cut=0, inner="quartile", ax=ax, legend=False)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="", ylabel="CLIPMem (normalised)" if column == "clipmem" else column,
           title="CLIPMem by subset (cf. paper Fig. 2a)")
    return ax


@timed("plotting")
def score_histograms(scores: pd.DataFrame, columns=("clipmem_raw", "clipmem"), subsets=("S_S", "S_C", "S_I")):
    """Sec. 3 / App. A.2: the distribution of each score column per subset, side by side (raw and normalised)."""
    fig, axes = _panels(len(columns))
    for ax, col in zip(axes, columns):
        sns.histplot(data=scores[scores.subset.isin(subsets)], x=col, hue="subset", hue_order=list(subsets),
                     palette=PALETTE, element="step", fill=False, bins=40, ax=ax)
        ax.set(title=col, xlabel="score")
    fig.tight_layout()
    return fig


@timed("plotting")
def clean_vs_poisoned(means: pd.DataFrame, ax=None):
    """Fig. 2b: mean CLIPMem of clean S_C (clean model, poisoned model) and of the mis-captioned pairs.

    ``means`` has columns ``model``, ``group`` and ``clipmem``
    (:func:`~clipmem_lib.clipmem.clean_vs_miscaptioned`).
    """
    ax = ax or _panels()[1][0]
    sns.barplot(data=means, x="model", y="clipmem", hue="group", palette="colorblind", ax=ax)
    for c in ax.containers:
        ax.bar_label(c, fmt="%.3f", fontsize=9)
    ax.set(xlabel="", ylabel="mean CLIPMem on S_C", title="Clean vs. poisoned model (cf. paper Fig. 2b)")
    return ax


def _img(data: PairData, i: int, size: int = 64) -> np.ndarray:
    return data.images.load(int(i), 0, size).permute(1, 2, 0).numpy()


def image_data_uri(data: PairData, i: int, size: int) -> str:
    """Pair ``i``'s image as a base64 PNG data URI (for HTML outputs that render without a kernel or a
    server: the book's pair tables, the audit's report.html)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_img(data, i, size)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@timed("plotting")
def gallery(data: PairData, scores: pd.DataFrame, k: int = 5, column: str = "clipmem", subset: str = "S_C",
            per_row: int = 5):
    """Fig. 1: the ``k`` most and ``k`` least memorised pairs of ``subset``, with caption and score
    (at most ``per_row`` pairs per row, captions readable at the book's width)."""
    s = scores[scores.subset == subset].sort_values(column, ascending=False)
    groups = [("most memorised", s.head(k)), ("least memorised", s.iloc[(s[column].abs()).argsort()[:k]])]
    ncols, rows_per = min(k, per_row), math.ceil(k / per_row)
    fig, axes = plt.subplots(2 * rows_per, ncols, figsize=(MAX_WIDTH, 3.3 * 2 * rows_per), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for g, (title, part) in enumerate(groups):
        for n, (_, row) in enumerate(part.iterrows()):
            ax = axes[g * rows_per + n // ncols, n % ncols]
            ax.axis("on")
            ax.imshow(_img(data, row["index"]), interpolation="nearest")
            cap = data.captions[int(row["index"])][0]
            flag = " [mis-captioned]" if bool(row.get("is_miscaptioned", False)) else ""
            ax.set_title(f"{row[column]:.2f}{flag}", fontsize=CAPTION_SIZE)
            ax.set_xlabel("\n".join(textwrap.wrap(textwrap.shorten(cap, 3 * CAPTION_CHARS, placeholder=" …"),
                                                  CAPTION_CHARS)), fontsize=CAPTION_SIZE)
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
        axes[g * rows_per, 0].set_ylabel(title, fontsize=CAPTION_SIZE + 1)
    fig.suptitle(f"Most and least memorised pairs of {subset} (cf. paper Fig. 1)")
    fig.tight_layout()
    return fig


@timed("plotting")
def alignment_scatter(scores: pd.DataFrame, ax=None):
    """Sec. 3: alignment under f against under g. Shared pairs lie on the diagonal however well they
    are aligned; only pairs that f alone trained on (S_C) rise above it. Hence Eq. 4 subtracts g."""
    ax = ax or _panels(height=WIDTH * 0.7)[1][0]
    sns.scatterplot(data=scores, x="align_g", y="align_f", hue="subset", hue_order=SUBSET_ORDER, palette=PALETTE,
                    s=10, alpha=0.6, ax=ax)
    lo, hi = scores[["align_f", "align_g"]].min().min(), scores[["align_f", "align_g"]].max().max()
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set(xlabel="A_align(g, I, T)", ylabel="A_align(f, I, T)", title="Alignment under f vs. g (Eq. 3)")
    return ax


@timed("plotting")
def metric_comparison(table: pd.DataFrame, columns: dict[str, str],
                      title: str = "Single-modality SSLMem vs. CLIPMem on S_C and S_S (cf. paper Fig. 3)"):
    """Fig. 3: S_C vs S_S distributions of several scores side by side (e.g. SSLMem image/text, CLIPMem)."""
    fig, axes = _panels(len(columns))
    part = table[table.subset.isin(["S_S", "S_C"])]
    for ax, (col, name) in zip(axes, columns.items()):
        sns.histplot(data=part, x=col, hue="subset", hue_order=["S_S", "S_C"], palette=PALETTE, stat="density",
                     common_norm=False, element="step", bins=30, ax=ax)
        ax.set(title=name, xlabel="score (normalised)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@timed("plotting")
def memorisation_vs_frequency(scores: pd.DataFrame, subset: str | None = "S_C", ax=None):
    """Built-in data only: CLIPMem against how often the pair's concept occurs in the data (the long tail);
    ``subset`` None takes every row (the audit's cross-fitted scores)."""
    ax = ax or _panels()[1][0]
    part = (scores if subset is None else scores[scores.subset == subset]).copy()
    part["concept seen"] = pd.cut(part.concept_count, [0, 1, 2, 4, 8, 16, 10**9],
                                  labels=["1", "2", "3–4", "5–8", "9–16", ">16"])
    sns.boxplot(data=part, x="concept seen", y="clipmem", color=PALETTE.get(subset, PALETTE["S_C"]), ax=ax)
    ax.set(xlabel="occurrences of the pair's concept in the dataset", ylabel="CLIPMem",
           title=f"Rare concepts are memorised ({subset or 'all pairs'})")
    return ax


@timed("plotting")
def unitmem_per_layer(table: pd.DataFrame, ax=None):
    """Fig. 4: mean UnitMem per layer, one line per model (``table``: model, layer, unitmem per unit)."""
    ax = ax or _panels()[1][0]
    sns.lineplot(data=table, x="layer", y="unitmem", hue="model", style="model", markers=True, dashes=False,
                 errorbar=("ci", 95), ax=ax)
    ax.set(xticks=sorted(table.layer.unique()), xlabel="transformer block", ylabel="mean UnitMem",
           title="UnitMem per layer (cf. paper Fig. 4)")
    return ax


@timed("plotting")
def unitmem_tracking(track: pd.DataFrame):
    """Fig. 11: share of the top 1/3/5% UnitMem units in each layer, along training."""
    aspect = 1.1
    g = sns.relplot(data=track, x="epoch", y="share", hue="layer", col="top_percent", kind="line", marker="o",
                    palette="viridis", height=MAX_WIDTH / (track.top_percent.nunique() * aspect + 0.4), aspect=aspect)
    g.set_titles("top {col_name}% units")
    g.set_axis_labels("epoch", "share of the top units")
    g.figure.suptitle("Where the most memorising units sit during CLIP training (cf. paper Fig. 11)", y=1.04)
    return g


@timed("plotting")
def pair_explorer(data: PairData, scores: pd.DataFrame, column: str = "clipmem"):
    """An ipywidgets browser of pairs ranked by ``column`` per subset.  It needs a live kernel: the static
    book loads no widget scripts (``nb_ipywidgets_js: {}``) and shows :func:`pair_table` instead."""
    import ipywidgets as w

    subset = w.Dropdown(options=SUBSET_ORDER, value="S_C", description="subset")
    rank = w.IntSlider(value=0, min=0, max=49, description="rank")
    view = w.HTML()

    def show(*_):
        part = scores[scores.subset == subset.value].sort_values(column, ascending=False)
        rank.max = max(0, len(part) - 1)
        row = part.iloc[min(rank.value, len(part) - 1)]
        caps = "".join(f"<li>{html.escape(c)}</li>" for c in data.captions[int(row['index'])])
        view.value = (f"<img src='{image_data_uri(data, row['index'], 128)}' width=128 "
                      f"style='image-rendering:pixelated'/><p><b>{column} = {row[column]:.3f}</b> "
                      f"(rank {rank.value + 1} of {len(part)} in {subset.value}; pair {int(row['index'])}"
                      f"{', mis-captioned' if bool(row.get('is_miscaptioned', False)) else ''})</p><ol>{caps}</ol>")

    subset.observe(show, "value")
    rank.observe(show, "value")
    show()
    return w.VBox([w.HBox([subset, rank]), view])


@timed("plotting")
def pair_table(data: PairData, scores: pd.DataFrame, column: str = "clipmem", k: int = 10):
    """The static stand-in for :func:`pair_explorer` (which needs a kernel or CDN scripts): the top ``k``
    pairs of each subset by ``column``, with a thumbnail, the first caption and the score, as HTML."""
    rows = []
    for sub in [s for s in SUBSET_ORDER if s in set(scores.subset)]:
        top = scores[scores.subset == sub].nlargest(k, column)
        rows += [{"subset": sub, "rank": r + 1, "image": f"<img src='{image_data_uri(data, row['index'], 48)}' width=48 "
                                                         "style='image-rendering:pixelated'/>",
                  "caption": html.escape(data.captions[int(row["index"])][0])
                  + (" <b>[mis-captioned]</b>" if bool(row.get("is_miscaptioned", False)) else ""),
                  column: f"{row[column]:.3f}", "pair": int(row["index"])} for r, (_, row) in enumerate(top.iterrows())]
    return HTML(pd.DataFrame(rows).to_html(escape=False, index=False, classes="pair-table"))


@timed("plotting")
def memorisation_and_utility(table: pd.DataFrame, x: str, memorisation: str = "clipmem", utility: str = "lp_acc",
                             *, err: str | None = "lp_std", xlabel: str | None = None, title: str = "", ax=None):
    """Fig. 5a / 5b: memorisation (left axis) and utility (right axis) against one swept setting."""
    ax = ax or _panels()[1][0]
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


@timed("plotting")
def removal_curves(curve: pd.DataFrame, metrics: str | Sequence[str] = "utility", *,
                   planted: str | None = "planted_removed", planted_label: str = "planted mis-captions removed",
                   title: str = "", axes=None):
    """Fig. 6: each of ``metrics`` after removing k pairs and retraining, one panel per metric and one
    line per strategy (log k axis, ticked at the k values); with ``planted``, one more panel counts the
    planted mis-captions each strategy removed.  The dotted line is the model before removal."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    columns = [(m, m) for m in metrics] + ([(planted, planted_label)] if planted and planted in curve
                                           else [])
    fig, axes = (None, axes) if axes is not None else _panels(len(columns))
    pos, ks = curve[curve.k > 0], sorted(curve[curve.k > 0].k.unique())
    for i, (ax, (col, label)) in enumerate(zip(axes, columns)):
        sns.lineplot(data=pos, x="k", y=col, hue="strategy", style="strategy", markers=True, dashes=False, ax=ax,
                     legend=i == 0)
        ax.set(xscale="log", xlabel="pairs removed (k)", ylabel=label)
        ax.set_xticks(ks, [str(int(k)) for k in ks])  # a FixedLocator at the k values ...
        ax.xaxis.set_minor_locator(NullLocator())     # ... and no log minor ticks labelled "3×10¹"
        if i < len(metrics):
            ax.axhline(curve.loc[curve.k == 0, col].iloc[0], color="grey", lw=0.8, ls=":", label="no removal")
    axes[0].figure.suptitle(title or "Removal and retraining (cf. Fig. 6)")
    if fig is not None:
        fig.tight_layout()
    return axes


@timed("plotting")
def caption_similarity(similarity: pd.DataFrame, ax=None):
    """Fig. 12: a histogram of each pair's mean pairwise caption similarity (``similarity``: one row per
    pair with ``style`` and ``similarity``), one colour per caption style."""
    ax = ax if ax is not None else _panels()[1][0]
    sns.histplot(data=similarity, x="similarity", hue="style", bins=30, element="step", ax=ax)
    ax.set(xlabel="mean pairwise cosine similarity of a pair's captions", ylabel="pairs",
           title="Caption similarity by style (cf. Fig. 12)")
    return ax


@timed("plotting")
def settings_comparison(table: pd.DataFrame, columns: dict[str, str], *, label: str = "setting",
                        errors: dict[str, str] | None = None, title: str = ""):
    """Table 1 / Table 3 as bars: one panel per column (e.g. CLIPMem, LP accuracy), one bar per setting."""
    errors = errors or {}
    fig, axes = _panels(len(columns), height=0.5 * len(table) + 1.5)
    colours = sns.color_palette("colorblind", len(table))
    for ax, (col, name) in zip(axes, columns.items()):
        ax.barh(table[label], table[col], xerr=table[errors[col]] if col in errors else None, color=colours, capsize=3)
        ax.invert_yaxis()
        ax.set(xlabel=name, ylabel="")
        lo, hi = table[col].min(), table[col].max()
        if lo > 0:  # zoom on the differences, as the paper's tables are read
            ax.set_xlim(max(0, lo - (hi - lo) * 1.5 - 0.01), hi + (hi - lo) * 0.5 + 0.01)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.suptitle(title)
    fig.tight_layout()
    return axes


VERDICT_COLOURS = {"holds": "#1b9e77", "fails": "#d95f02", "too small": "#7570b3", "inconclusive": "#7f7f7f"}


@timed("plotting")
def forest(rows: pd.DataFrame, title: str = "Every tested effect with its 95% interval over paired seeds"):
    """The summary's forest plot: one line per tested row (effect signed so that right of 0 is the paper's
    direction, with its interval), one panel per unit, coloured by verdict."""
    tested = rows[rows.verdict.isin(list(VERDICT_COLOURS))].reset_index(drop=True)
    units = list(dict.fromkeys(tested.unit.fillna("")))
    heights = [max(1, (tested.unit == u).sum()) for u in units]
    fig, axes = plt.subplots(len(units), 1, figsize=(MAX_WIDTH, 0.42 * sum(heights) + 0.9 * len(units)),
                             gridspec_kw=dict(height_ratios=heights), squeeze=False)
    for ax, unit in zip(axes[:, 0], units):
        part = tested[tested.unit == unit].iloc[::-1]
        y = np.arange(len(part))
        for yi, (_, r) in zip(y, part.iterrows()):
            c = VERDICT_COLOURS[r.verdict]
            if np.isfinite(r.low) and np.isfinite(r.high):
                ax.plot([r.low, r.high], [yi, yi], color=c, lw=2.2)
            ax.plot(r.effect, yi, "o", color=c, ms=6)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [textwrap.shorten(f"{r.claim or '–'}: {r.what}", 70, placeholder=" …") for _, r in part.iterrows()],
                      fontsize=9)
        ax.set_xlabel(f"effect in the paper's direction ({unit or 'score'})", fontsize=9)
        ax.set_ylim(-0.7, len(part) - 0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLOURS.items()]
    fig.legend(handles=handles, loc="upper right", ncols=3, frameon=False)
    fig.suptitle(title, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


@timed("plotting")
def detection_benchmark(summary: pd.DataFrame, metrics=("auroc", "auprc", "precision_at_k")):
    """The audit chapter's benchmark: per metric a panel, per planting rate a group, per method a point
    with its 95% interval over seeds (``audit.benchmark_summary``'s table)."""
    fig, axes = _panels(len(metrics), height=HEIGHT + 0.6)
    flat = summary.reset_index()
    methods = list(dict.fromkeys(flat.method))
    colours = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    rates = list(dict.fromkeys(flat.rate))
    for ax, m in zip(axes, metrics):
        for k, method in enumerate(methods):
            part = flat[flat.method == method]
            x = np.array([rates.index(r) for r in part.rate]) + (k - (len(methods) - 1) / 2) * 0.8 / len(methods)
            ax.errorbar(x, part[m], yerr=[part[m] - part[f"{m}_low"], part[f"{m}_high"] - part[m]], fmt="o",
                        color=colours[method], capsize=3, label=method)
        ax.set_xticks(range(len(rates)), [f"{r:.0%}" for r in rates])
        ax.set(xlabel="share of pairs planted", title=m.replace("_", " ").replace("auroc", "AUROC").replace("auprc", "AUPRC"))
    axes[0].set_ylabel("mean over seeds, 95% interval")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncols=3, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


@timed("plotting")
def noise_over_training(history: pd.DataFrame, title: str = "Text noise during training"):
    """Claim 6's axis: the noise-to-signal ratio σ·√d/‖z‖ and the feature norm ‖z‖ against the epoch, one
    line per std (band: the range over training seeds) (``sweeps.noise_over_training``'s table)."""
    fig, axes = _panels(2)
    style = "placement" if "placement" in history else None  # several placements: one dash style each
    for ax, (col, label) in zip(axes, [("noise_to_signal", "noise-to-signal ratio σ·√d / ‖z‖"),
                                       ("feature_norm", "mean norm ‖z‖ of the noised features")]):
        sns.lineplot(data=history, x="epoch", y=col, hue="setting", style=style, errorbar=("pi", 100), ax=ax,
                     legend=ax is axes[0])
        ax.set(ylabel=label)
    axes[0].axhline(1, color="black", lw=0.8, ls="--")  # noise as large as the signal
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@timed("plotting")
def noise_axis(table: pd.DataFrame, title: str = "Memorisation and utility on the noise-to-signal axis (cf. Fig. 5b)"):
    """Claim 6 on the axis that transfers between models: raw CLIPMem on S_C, held-out R@1 and the probe
    against the noise-to-signal ratio at the end of training, one line per placement; a point is the mean
    over the seeds its setting ran at, its bar their range (``compare_settings`` rows stacked by placement)."""
    cols = ["noise_to_signal", "clipmem_raw", "r_at_1", "lp_acc"]
    stats = table.groupby(["placement", "setting"])[cols].agg(["mean", "min", "max"])
    fig, axes = _panels(3)
    for ax, (col, label) in zip(axes, [("clipmem_raw", "raw CLIPMem on S_C"), ("r_at_1", "held-out R@1"),
                                       ("lp_acc", "linear probe accuracy")]):
        for placement, t in stats.groupby(level="placement"):
            t = t.sort_values(("noise_to_signal", "mean"))
            y = t[(col, "mean")]
            spread = [(y - t[(col, "min")]).clip(lower=0), (t[(col, "max")] - y).clip(lower=0)]  # ≥ 0 despite rounding
            ax.errorbar(t[("noise_to_signal", "mean")], y, yerr=spread, fmt="o-", capsize=3, label=f"{placement} features")
        ax.axvline(1, color="black", lw=0.8, ls="--")  # noise as large as the signal
        ax.set_xscale("symlog", linthresh=0.1)  # linear near 0 (no noise), logarithmic from 0.1 to beyond 1
        ax.set(xlabel="noise-to-signal ratio, end of training", ylabel=label,
               xlim=(-0.01, 1.5 * max(1.0, stats[("noise_to_signal", "mean")].max())))
        ax.xaxis.set_minor_locator(NullLocator())
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
