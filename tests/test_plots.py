"""The book's figures (Agg backend): Fig. 6's ticks and panels, Fig. 1's readable captions, the widths,
and the static pair table that replaces the widget explorer."""
import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from clipmem_lib import plots  # noqa: E402
from clipmem_lib.clipmem import clean_vs_miscaptioned  # noqa: E402
from clipmem_lib.scenes import SceneConfig, make_scenes  # noqa: E402

KS = [20, 40, 80]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def pairs():
    data = make_scenes(SceneConfig(n=40, seed=0))
    scores = pd.DataFrame({"index": np.arange(40), "subset": ["S_C"] * 12 + ["S_S"] * 28,
                           "clipmem": np.linspace(1, -0.5, 40), "clipmem_raw": np.linspace(2, -1, 40),
                           "is_miscaptioned": [True] + [False] * 39})
    return data, scores


def curve():
    rows = [dict(strategy=s, k=0, lp_acc=0.5, r_at_1=0.2, planted_removed=0) for s in ("clipmem", "random")]
    rows += [dict(strategy=s, k=k, lp_acc=0.5 + 0.01 * i, r_at_1=0.2 - 0.01 * i, planted_removed=i)
             for s in ("clipmem", "random") for i, k in enumerate(KS)]
    return pd.DataFrame(rows)


def test_removal_curves_ticks_at_k_and_no_minor_labels():
    axes = plots.removal_curves(curve(), "lp_acc", planted=None)
    axes[0].figure.canvas.draw()
    ax = axes[0]
    assert list(ax.xaxis.get_majorticklocs()) == KS
    assert [t.get_text() for t in ax.get_xticklabels()] == ["20", "40", "80"]
    assert len(ax.xaxis.get_minorticklocs()) == 0
    assert not [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]


def test_removal_curves_two_metrics_one_planted_panel():
    axes = plots.removal_curves(curve(), ["lp_acc", "r_at_1"], title="planted data")
    axes[0].figure.canvas.draw()
    assert [ax.get_ylabel() for ax in axes] == ["lp_acc", "r_at_1", "planted mis-captions removed"]
    assert all(list(ax.xaxis.get_majorticklocs()) == KS and len(ax.xaxis.get_minorticklocs()) == 0 for ax in axes)
    assert axes[0].figure.get_figwidth() <= plots.MAX_WIDTH
    assert len(plots.removal_curves(curve(), "lp_acc")) == 2  # the old single-metric call: metric + planted


def test_gallery_captions_readable(pairs):
    data, scores = pairs
    fig = plots.gallery(data, scores, k=5)
    assert fig.get_figwidth() <= 10
    captions = [ax.xaxis.label for ax in fig.axes if ax.get_xlabel()]
    assert len(captions) == 10
    assert all(c.get_fontsize() >= 9 for c in captions)
    assert all(len(line) <= 22 for c in captions for line in c.get_text().splitlines())
    assert "[mis-captioned]" in fig.axes[0].get_title()  # a real bool column


def test_multi_panel_figures_fit_the_column(pairs):
    _, scores = pairs
    wide = scores.assign(a=1.0, b=2.0)
    fig = plots.metric_comparison(wide, {"clipmem": "c", "a": "a", "b": "b"})
    assert fig.get_figwidth() <= plots.MAX_WIDTH
    table = pd.DataFrame({"setting": ["x", "y"], "p": [1.0, 2.0], "q": [0.5, 0.6], "r": [0.1, 0.2], "s": [3.0, 4.0]})
    axes = plots.settings_comparison(table, {c: c for c in "pqrs"})
    assert len(axes) == 4 and axes[0].figure.get_figwidth() <= plots.MAX_WIDTH
    assert plots.subset_distributions(scores).figure.get_figwidth() == plots.WIDTH


def test_clean_vs_poisoned_draws_fig2b(pairs):
    _, scores = pairs
    bars, _ = clean_vs_miscaptioned(scores, scores)
    ax = plots.clean_vs_poisoned(bars)
    assert len(ax.patches) >= 3


def test_pair_table_is_static_html(pairs):
    data, scores = pairs
    html = plots.pair_table(data, scores, k=3).data
    assert html.count("<img src='data:image/png;base64,") == 6  # 3 per subset present (S_S, S_C)
    assert html.index(">S_S<") < html.index(">S_C<") and html.count("[mis-captioned]") == 1
    assert "1.000" in html  # the top pair's score


def test_pair_explorer_flags_bool_miscaptions(pairs):
    data, scores = pairs
    box = plots.pair_explorer(data, scores)
    assert "mis-captioned" in box.children[1].value and "rank 1 of 12 in S_C" in box.children[1].value
