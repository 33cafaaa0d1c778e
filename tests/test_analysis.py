"""The chapters' analysis (Fig. 1–4, 6, 11, Tables 1/3/8) and claim rules on tiny frames with known answers;
every ROC AUC against brute-force pair counting."""
import numpy as np
import pandas as pd
import pytest

from clipmem_lib.clipmem import (candidate_summary, clean_vs_miscaptioned, metric_summary, separation_auc,
                                 setting_effects, subset_means, top_count, top_enrichment)
from clipmem_lib.removal import describe_peak, oracle_check, peak_table, planted_counts
from clipmem_lib.sslmem import top_overlap
from clipmem_lib.unitmem import last_layer_share, layer_summary


def pair_auc(pos, neg):
    """ROC AUC by counting: the share of (positive, negative) pairs ordered correctly, ties one half."""
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])


def frame(**subsets):
    """A score table: ``S_C=[...], S_S=[...]`` -> rows with subset, index and clipmem (raw = 2 x clipmem)."""
    rows = [(s, v) for s, vals in subsets.items() for v in vals]
    df = pd.DataFrame(rows, columns=["subset", "clipmem"])
    return df.assign(index=np.arange(len(df)), clipmem_raw=2 * df.clipmem)


# ------------------------------------------------------------------------------------- clipmem.py

def test_separation_auc_counts_pairs_and_matches_candidate_summary():
    rng = np.random.default_rng(0)
    c, s = rng.integers(0, 5, 30) / 4, rng.integers(0, 4, 50) / 4  # many ties
    df = frame(S_C=c, S_S=s, S_I=rng.normal(size=10))  # S_I must be ignored
    assert separation_auc(df) == pytest.approx(pair_auc(c, s))
    assert separation_auc(df, positive="S_S", negative="S_C") == pytest.approx(1 - pair_auc(c, s))
    assert candidate_summary(df)["auc"] == separation_auc(df)  # one AUC for Tables 1/3/8 and Fig. 3
    assert separation_auc(frame(S_C=[0.3, 0.9], S_S=[0.1, 0.5])) == pytest.approx(0.75)  # 3 of 4 pairs


def test_subset_means_in_paper_order():
    df = frame(S_E=[0.0, 0.2], S_I=[-0.4], S_C=[0.5, 0.7], S_S=[0.1])
    m = subset_means(df)
    assert m.index.tolist() == ["S_S", "S_C", "S_I", "S_E"]
    assert m.clipmem.tolist() == pytest.approx([0.1, 0.6, -0.4, 0.1])
    assert m.clipmem_raw.tolist() == pytest.approx([0.2, 1.2, -0.8, 0.2])
    assert subset_means(frame(S_C=[1.0], S_S=[0.0])).index.tolist() == ["S_S", "S_C"]  # absent subsets: no row


def test_metric_summary_fig3_table():
    df = frame(S_C=[0.3, 0.9], S_S=[0.1, 0.5]).assign(sslmem_text=[0.2, 0.4, 0.3, 0.1])
    out = metric_summary(df, {"clipmem": "CLIPMem", "sslmem_text": "SSLMem, text"})
    assert out.index.tolist() == ["clipmem", "sslmem_text"] and out.metric.tolist() == ["CLIPMem", "SSLMem, text"]
    assert out.loc["clipmem"].drop("metric").tolist() == pytest.approx([0.75, 0.9, 0.6, 0.3])
    assert out.loc["sslmem_text", "ROC AUC S_C vs S_S"] == pytest.approx(pair_auc([0.2, 0.4], [0.3, 0.1]))
    assert out.loc["sslmem_text", "mean on S_S"] == pytest.approx(0.2)


def test_clean_vs_miscaptioned_fig2b():
    clean = frame(S_C=[0.4, 0.2, 0.6, 0.8], S_S=[0.0])
    poisoned = frame(S_C=[0.3, 0.1, 0.9, 0.5], S_S=[0.0]).assign(is_miscaptioned=[False, False, True, False, False])
    bars, auc = clean_vs_miscaptioned(clean, poisoned)
    assert bars[["model", "group"]].values.tolist() == [["clean model", "clean S_C"], ["poisoned model", "clean S_C"],
                                                        ["poisoned model", "mis-captioned S_C"]]
    # clean S_C = pairs 0, 1, 3: under the clean model (0.4 + 0.2 + 0.8) / 3, under the poisoned (0.3 + 0.1 + 0.5) / 3
    assert bars.clipmem.tolist() == pytest.approx([1.4 / 3, 0.3, 0.9])
    assert bars.clipmem_raw.tolist() == pytest.approx([2.8 / 3, 0.6, 1.8])
    assert auc == pytest.approx(pair_auc([0.9], [0.3, 0.1, 0.5])) == 1.0
    poisoned.loc[0, "is_miscaptioned"] = True  # mis-captioned 0.3 and 0.9 against clean 0.1 and 0.5
    assert clean_vs_miscaptioned(clean, poisoned)[1] == pytest.approx(pair_auc([0.3, 0.9], [0.1, 0.5])) == 0.75


def test_top_enrichment_fig1():
    df = frame(S_C=np.arange(20) / 20, S_S=[5.0]).assign(concept_count=list(range(20, 0, -1)) + [99],
                                                         is_atypical=[False] * 17 + [True, True, False] + [True])
    out = top_enrichment(df, ["concept_count", "is_atypical", "not_a_column"])
    assert out.columns.tolist() == ["top 10% of S_C", "all of S_C"]
    assert out.index.tolist() == ["concept_count", "is_atypical"]  # columns that are not there are skipped
    # top 10% of 20 = the 2 highest CLIPMem (rows 18, 19): concept counts 2 and 1, one atypical
    assert out["top 10% of S_C"].tolist() == pytest.approx([1.5, 0.5])
    assert out["all of S_C"].tolist() == pytest.approx([10.5, 0.1])
    assert top_count(20, 0.1) == 2 and top_count(200, 0.1) == 20 and top_count(9, 0.1) == 1 and top_count(70, 0.1) == 7


def test_setting_effects_table1():
    table = pd.DataFrame({"setting": ["base", "text", "image"], "clipmem": [0.5, 0.4, 0.45], "lp_acc": [0.6, 0.7, 0.65],
                          "f": ["a", "b", "c"]})
    out = setting_effects(table, "base", {"text side": "text", "image side": "image", "missing": "nope"})
    assert out.columns.tolist() == ["clipmem", "lp_acc"]  # numeric columns only
    assert out.loc["text side"].tolist() == pytest.approx([-0.1, 0.1])
    assert out.loc["image side"].tolist() == pytest.approx([-0.05, 0.05])
    assert out.loc["missing"].isna().all()


# -------------------------------------------------------------------------------------- sslmem.py

def test_top_overlap():
    # 20 S_C pairs: top 2 by a are pairs 19, 18; top 2 by b are 19 and 0
    df = frame(S_C=np.arange(20) / 20, S_S=[9.0, 8.0]).assign(b=list(np.arange(20) / 20) + [9.0, 9.0])
    df.loc[0, "b"] = 5.0
    assert top_overlap(df, "clipmem", "b") == (1, 2)
    assert top_overlap(df, "clipmem", "clipmem", fraction=0.25) == (5, 5)


# ------------------------------------------------------------------------------------- unitmem.py

def test_layer_summary_fig4():
    table = pd.DataFrame({"model": ["a"] * 6 + ["b"] * 4,
                          "layer": [0, 0, 1, 1, 2, 2] + [0, 0, 1, 1],
                          "unitmem": [0.1, 0.3, 0.4, 0.4, 1.0, 0.6] + [0.5, 0.5, 0.2, 1.0]})
    out = layer_summary(table)
    assert out.loc["a", [0, 1, 2]].tolist() == pytest.approx([0.2, 0.4, 0.8])
    assert out.loc["a", "rise"] == pytest.approx(0.6) and out.loc["a", "last"] == pytest.approx(0.8)
    assert out.loc["b", "rise"] == pytest.approx(0.1) and out.loc["b", "last"] == pytest.approx(0.6)  # its own last block
    assert np.isnan(out.loc["b", 2])
    assert out.saturated.tolist() == pytest.approx([1 / 6, 1 / 4])  # UnitMem > 0.999


def test_last_layer_share_fig11():
    track = pd.DataFrame({"epoch": [4, 4, 2, 2, 4, 2], "top_percent": [1, 1, 1, 1, 5, 5], "layer": [0, 1, 0, 1, 1, 1],
                          "share": [0.3, 0.7, 0.6, 0.4, 0.9, 0.1]})
    assert last_layer_share(track) == pytest.approx((0.4, 0.7))
    assert last_layer_share(track, percent=5) == pytest.approx((0.1, 0.9))


# ------------------------------------------------------------------------------------- removal.py

def removal_frame(clip, rand, base=0.5, ks=(10, 20, 40, 80), data=None):
    rows = [dict(strategy=s, k=0, lp_acc=base, planted_removed=0) for s in ("clipmem", "random")]
    rows += [dict(strategy=s, k=k, lp_acc=u, planted_removed=p)
             for s, us, ps in [("clipmem", clip, (5, 9, 10, 10)), ("random", rand, (1, 2, 4, 8))]
             for k, u, p in zip(ks, us, ps)]
    df = pd.DataFrame(rows)
    return df.assign(data=data) if data else df


def test_peak_table_and_description():
    curve = pd.concat([removal_frame([0.52, 0.55, 0.49, 0.40], [0.5] * 4, data="clean"),
                       removal_frame([0.6] * 4, [0.5] * 4, data="planted")], ignore_index=True)
    out = peak_table(curve, ["lp_acc"])
    assert out.index.tolist() == [("clean", "lp_acc"), ("planted", "lp_acc")]
    assert out.peak_k.tolist() == [20, 10] and out.peak_gain.tolist() == pytest.approx([0.05, 0.1])
    assert out.loc[("clean", "lp_acc"), "cutoff_k"] == 40 and pd.isna(out.loc[("planted", "lp_acc"), "cutoff_k"])
    assert peak_table(curve[curve.data == "clean"], ["lp_acc"], by=None).index.tolist() == ["lp_acc"]
    assert describe_peak(out.loc[("clean", "lp_acc")]) == "peak at k = 20 (+0.050 vs random), below random from k = 40"
    assert describe_peak(out.loc[("planted", "lp_acc")]).endswith("no cut-off on the grid")


def test_planted_counts():
    counts = planted_counts(removal_frame([0.5] * 4, [0.5] * 4))
    assert counts.index.tolist() == [0, 10, 20, 40, 80] and counts.loc[80].tolist() == [10, 8]


def test_oracle_check_compares_the_oracle_gain_with_twice_the_half_width():
    rows = [dict(seed=s, strategy=st, k=k, lp_acc=v, r_at_1=v / 2)
            for s, gain in ((0, 0.04), (1, 0.06))
            for k in (20, 40)
            for st, v in (("random", 0.5), ("clipmem", 0.51), ("oracle", 0.5 + gain if k == 20 else 0.0))]
    rows.append(dict(seed=2, strategy="random", k=20, lp_acc=0.5, r_at_1=0.25))  # no oracle at seed 2: not paired
    out = oracle_check(pd.DataFrame(rows), 20, {"lp_acc": 0.02, "r_at_1": 0.02})
    assert out.loc["lp_acc", "oracle_gain"] == pytest.approx(0.05) and out.loc["lp_acc", "n_seeds"] == 2
    assert out.loc["lp_acc", "ratio"] == pytest.approx(2.5) and out.loc["lp_acc", "enough"]  # 0.05 >= 2 x 0.02
    assert out.loc["r_at_1", "oracle_gain"] == pytest.approx(0.025) and not out.loc["r_at_1", "enough"]  # < 0.04
