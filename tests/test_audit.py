"""Cross-fitted CLIPMem and the `clipmem audit` command (audit.py, cli.py)."""
import html
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from browser import clicked_download, rendered_dom
from clipmem_lib import audit
from clipmem_lib.audit import (assign_folds, crossfit_alignment, detection_metrics, fold_tests, neighbour_scores,
                               score_crossfit)
from clipmem_lib.cli import main
from clipmem_lib.loaders import PHOTO_CAPTIONS, photo_arrays
from clipmem_lib.data import PairData, TensorImages
from clipmem_lib.runtime import Context
from clipmem_lib.store import RunStore
from clipmem_lib.splits import plant_miscaptions


def _unit(*shape, seed=0):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


class _Stub:  # what score_crossfit reads of a trained model: its key
    def __init__(self, key):
        self.key = key


def _brute_alignment(img, txt, i, test):
    """Eq. 3 by loops: crops × captions of the pair, minus its image against each test caption, minus
    each test image against its captions (the pair left out of its own test set)."""
    first = np.mean([float(img[i, c] @ txt[i, t]) for c in range(1, img.shape[1]) for t in range(txt.shape[1])])
    others = [t for t in test if t != i]
    second = np.mean([float(img[i, 0] @ txt[t, c]) for t in others for c in range(txt.shape[1])])
    third = np.mean([float(img[t, 0] @ txt[i, c]) for t in others for c in range(txt.shape[1])])
    return first - second - third


def test_crossfit_scores_equal_a_brute_force_computation(monkeypatch, scenes_of):
    data = scenes_of(24, seed=5)
    k, crops = 3, 4
    pool = np.arange(3, 24)  # pairs 0-2 are not audited
    folds = assign_folds(len(data), k, seed=1, pool=pool)
    emb = {f"m{j}": (_unit(24, 1 + crops, 8, seed=10 + j), _unit(24, 2, 8, seed=20 + j)) for j in range(k)}
    monkeypatch.setattr(audit, "model_embeddings", lambda m, d, idx, **kw: tuple(e[idx] for e in emb[m.key]))
    scores = score_crossfit([_Stub(f"m{j}") for j in range(k)], data, folds, n_crops=crops, n_test=5, n_neighbours=3,
                            ctx=Context(store=RunStore(None), progress=False))
    tests = fold_tests(folds, 5, 0)
    assert list(scores["index"]) == list(pool)
    for i in pool:
        own = folds[i]
        a = {j: _brute_alignment(*emb[f"m{j}"], i, tests[j]) for j in range(k)}
        seen = np.mean([a[j] for j in range(k) if j != own])
        row = scores.set_index("index").loc[i]
        assert row.align_unseen == pytest.approx(a[own], abs=1e-5)
        assert row.align_seen == pytest.approx(seen, abs=1e-5)
        assert row.clipmem_raw == pytest.approx(seen - a[own], abs=1e-5)
        img, txt = emb[f"m{own}"]
        assert row.similarity_unseen == pytest.approx(float(img[i, 0] @ txt[i].mean(0)), abs=1e-5)
    raw = scores.clipmem_raw.to_numpy()
    np.testing.assert_allclose(scores.clipmem, raw / (raw.max() - raw.min()))
    assert all(set(folds[t]) == {j} for j, t in enumerate(tests))  # model j's tests: fold j


def test_crossfit_jobs_train_on_the_other_folds_of_the_pool(scenes_of):
    data = scenes_of(24, seed=5)
    folds = assign_folds(len(data), 3, seed=2, pool=np.arange(4, 24))
    jobs = audit.crossfit_jobs(data, folds, "clipmem-tiny")
    for j, job in enumerate(jobs):
        np.testing.assert_array_equal(job.indices, [i for i in range(4, 24) if folds[i] != j])
    assert len({job.init_seed for job in jobs}) == 1


def test_crossfit_alignment_finds_planted_memorisation():
    # pair 4 aligns 0.9 under the models that saw it and 0.1 under its own fold's model; others align 0.5 everywhere
    folds = np.array([0, 1, 2, 0, 1, 2])
    align = np.full((3, 6), 0.5)
    align[:, 4] = 0.9
    align[1, 4] = 0.1
    seen, unseen = crossfit_alignment(align, folds)
    np.testing.assert_allclose(seen - unseen, [0, 0, 0, 0, 0.8, 0])


def test_folds_are_balanced_seeded_and_validated():
    f = assign_folds(103, 5, seed=3)
    assert sorted(np.bincount(f)) == [20, 20, 21, 21, 21]
    np.testing.assert_array_equal(f, assign_folds(103, 5, seed=3))
    assert not np.array_equal(f, assign_folds(103, 5, seed=4))
    with pytest.raises(ValueError, match="from 2 to 10"):
        assign_folds(100, 1)
    with pytest.raises(ValueError, match="from 2 to 10"):
        assign_folds(100, 11)
    with pytest.raises(ValueError, match="too few for 5 folds"):
        assign_folds(9, 5)


def test_neighbour_scores_equal_loops():
    img, txt = _unit(12, 6, seed=1), _unit(12, 6, seed=2)
    agree, lemon = neighbour_scores(img, txt, k=3)
    for i in range(12):
        si = [(float(img[i] @ img[j]), j) for j in range(12) if j != i]
        st = [(float(txt[i] @ txt[j]), j) for j in range(12) if j != i]
        nn_i = [j for _, j in sorted(si, reverse=True)[:3]]
        nn_t = [j for _, j in sorted(st, reverse=True)[:3]]
        a = np.mean([float(txt[i] @ txt[j]) for j in nn_i])
        assert agree[i] == pytest.approx(a, abs=1e-6)
        assert lemon[i] == pytest.approx(1 - float(img[i] @ txt[i]) + 1 - a
                                         + np.mean([1 - float(img[i] @ img[j]) for j in nn_t]), abs=1e-6)


def test_lemon_flags_a_swapped_caption():
    # 3 clusters of 4 pairs whose image and caption point the same way; pair 0's caption comes from cluster 2
    centres = _unit(3, 16, seed=3)
    img = torch.nn.functional.normalize(centres.repeat_interleave(4, 0) + 0.1 * _unit(12, 16, seed=4), dim=-1)
    txt = torch.nn.functional.normalize(centres.repeat_interleave(4, 0) + 0.1 * _unit(12, 16, seed=5), dim=-1)
    txt[0] = txt[8]
    agree, lemon = neighbour_scores(img, txt, k=3)
    assert lemon.argmax() == 0 and agree.argmin() == 0


def test_neighbour_consistency_equals_loops_and_flags_a_swapped_caption():
    caps = ["red fish swims", "red fish", "blue bird", "blue bird sings", "green tree", "tall green tree", "lone word"]
    img = _unit(7, 8, seed=6)
    txt = audit.caption_vectors(caps)
    for chunk in (2, 2048):  # chunking changes nothing
        of_caps, of_imgs = audit.neighbour_consistency(img, txt, k=2, chunk=chunk)
        st = (txt @ txt.T).toarray()
        for i in range(7):
            nn_t = sorted((j for j in range(7) if j != i), key=lambda j: -st[i, j])[:2]
            near = [float(img[i] @ img[j]) for j in nn_t if st[i, j] > 0]
            assert (np.isnan(of_caps[i]) if not near else of_caps[i] == pytest.approx(np.mean(near), abs=1e-6))
            nn_i = sorted((j for j in range(7) if j != i), key=lambda j: -float(img[i] @ img[j]))[:2]
            assert of_imgs[i] == pytest.approx(np.mean([st[i, j] for j in nn_i]), abs=1e-6)
    assert np.isnan(of_caps[6])  # "lone word" shares no term: no evidence
    # 3 clusters of 4 pairs, images and captions alike within a cluster; pair 0 carries a cluster-2 caption
    centres = _unit(3, 16, seed=3)
    img = torch.nn.functional.normalize(centres.repeat_interleave(4, 0) + 0.1 * _unit(12, 16, seed=4), dim=-1)
    words = ["fish water swim", "bird wing sky", "tree leaf wood"]
    caps = [f"{words[c]} {n}" for c in range(3) for n in ("one", "two", "three", "four")]
    caps[0] = "tree leaf wood five"
    of_caps, of_imgs = audit.neighbour_consistency(img, audit.caption_vectors(caps), k=3)
    assert of_caps.argmin() == 0 and of_imgs.argmin() == 0
    pix = audit.pixel_vectors(TensorImages(torch.randint(0, 256, (5, 1, 3, 8, 8), dtype=torch.uint8), "t"), range(5), 8)
    assert pix.shape == (5, 192) and torch.allclose(pix.norm(dim=1), torch.ones(5))


def test_detection_metrics_against_hand_counts():
    truth = np.array([1, 1, 0, 0, 0, 1], bool)
    m = detection_metrics(truth, [0.9, 0.2, 0.8, 0.1, 0.3, 0.7])
    assert m["precision_at_k"] == pytest.approx(2 / 3)  # top 3: 0.9 (yes), 0.8 (no), 0.7 (yes)
    pos, neg = [0.9, 0.2, 0.7], [0.8, 0.1, 0.3]
    assert m["auroc"] == pytest.approx(np.mean([p > n for p in pos for n in neg]))
    assert m["auprc"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    assert detection_metrics(truth, truth.astype(float))["auroc"] == 1.0
    with pytest.raises(ValueError, match="both flagged and unflagged"):
        detection_metrics(np.zeros(4, bool), np.arange(4))


# ------------------------------------------------------------------ the command: bad input


def _photos_csv(tmp_path, n=8, size=40):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
        rows.append((f"p{i}.png", f"a picture number {i}"))
    pd.DataFrame(rows, columns=["filepath", "title"]).to_csv(tmp_path / "pairs.csv", sep="\t", index=False)
    return tmp_path / "pairs.csv"


@pytest.mark.parametrize("case, args, message", [
    ("missing column", ["--csv-caption-key", "caption"], "column 'caption' not in"),
    ("unknown model", ["--model", "ViT-Z-99"], "unknown model config 'ViT-Z-99'"),
    ("too few pairs", ["--folds", "5"], "8 pairs are too few for 5 folds"),
    ("bad folds", ["--folds", "1"], "folds must be an integer from 2 to 10"),
    ("bad fold", ["--folds", "2", "--fold", "3"], "--fold 3: choose a fold from 1 to 2"),
    ("bad image size", ["--image-size", "30"], "multiple of clipmem-tiny's patch size 8"),
    ("bad drop", ["--drop", "some"], "--drop 'some': give a number of pairs or 'reviewed'"),
])
def test_audit_bad_input_gives_one_line_and_status_2(tmp_path, capsys, case, args, message):
    csv = _photos_csv(tmp_path)
    assert main(["audit", str(csv), "--out", str(tmp_path / "out"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out" / "runs").exists()  # nothing trained


def test_audit_names_a_missing_or_corrupt_image(tmp_path, capsys):
    csv = _photos_csv(tmp_path)
    (tmp_path / "p3.png").write_bytes(b"not a png")
    assert main(["audit", str(csv), "--out", str(tmp_path / "out"), "--folds", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "corrupt or not an image" in err and "p3.png" in err
    (tmp_path / "p3.png").unlink()
    assert main(["audit", str(csv), "--out", str(tmp_path / "out"), "--folds", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "p3.png" in err


def test_audit_missing_path(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "CSV file not found" in capsys.readouterr().err


# ------------------------------------------------------------------ end to end (trains small models)


@pytest.mark.slow
def test_crossfit_clipmem_ranks_planted_miscaptions_high(scenes_of):
    data = scenes_of(400, seed=7)
    planted = plant_miscaptions(data, np.arange(len(data)), 0.1, seed=1)
    from clipmem_lib.fitting import fit_many
    from clipmem_lib.train import TrainConfig

    folds = assign_folds(len(planted), 2, seed=0)
    ctx = Context(store=RunStore(None), progress=False)
    # batch 32: 6 steps per epoch on a fold model's 200 pairs (with batch 128, 30 epochs are 30 steps: AUROC 0.51)
    models = fit_many(audit.crossfit_jobs(planted, folds, "clipmem-tiny", TrainConfig(epochs=40, batch_size=32, seed=0)),
                      ctx)
    scores = score_crossfit(models, planted, folds, n_crops=2, ctx=ctx)
    m = detection_metrics(scores.is_miscaptioned, scores.clipmem)
    assert m["auroc"] > 0.65, m  # 0.76 measured
    means = scores.groupby("is_miscaptioned").clipmem.mean()
    assert means[True] > means[False] + 0.05


def _real_photos_csv(tmp_path):
    """About 20 real photographs shipped with scikit-image, each with a short caption; two swaps planted."""
    pytest.importorskip("skimage.data", reason="scikit-image (requirements.txt) provides the real photos")
    rows = []
    for name, img in photo_arrays().items():
        Image.fromarray(img).save(tmp_path / f"{name}.png")
        rows.append([f"{name}.png", PHOTO_CAPTIONS[name]])
    assert len(rows) >= 12, f"only {len(rows)} offline photos in this scikit-image"
    for a, b in [(0, 3), (5, 8)]:  # planted swaps
        rows[a][1], rows[b][1] = rows[b][1], rows[a][1]
    pd.DataFrame(rows, columns=["filepath", "title"]).to_csv(tmp_path / "photos.csv", sep="\t", index=False)
    return tmp_path / "photos.csv", len(rows)


@pytest.mark.slow
def test_audit_end_to_end_on_real_photographs(tmp_path):
    csv, n = _real_photos_csv(tmp_path)
    out = tmp_path / "audit"
    cmd = [sys.executable, "-m", "clipmem_lib.cli", "audit", str(csv), "--out", str(out), "--folds", "2",
           "--epochs", "3", "--image-size", "64", "--top", "5", "--quiet"]
    for fold in ("1", "2"):  # the folds as separate jobs, then the final call reuses them
        r = subprocess.run([*cmd, "--fold", fold], capture_output=True, text=True)
        assert r.returncode == 0 and f"fold {fold} of 2: model stored in" in r.stdout, r.stderr
    r = subprocess.run([*cmd, "--drop", "2", "--review-sample", "5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{n} pairs scored" in r.stdout and str(out / "report.html") in r.stdout and "captions look wrong" in r.stdout
    assert len(list((out / "runs" / "clip").iterdir())) == 2  # the final call trained nothing more
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert len(scores) == n and sorted(scores["rank"]) == list(range(1, n + 1))
    assert sorted(scores.miscaption_rank) == list(range(1, n + 1))
    assert set(scores.columns) >= {"id", "image_path", "caption", "miscaption_score", "fixed_score", "caption_ok", "score",
                                   "rank", "similarity_unseen", "rank_i2t_unseen", "neighbour_agreement", "nearest_caption"}
    assert scores.miscaption_score.is_monotonic_decreasing and (scores.caption_ok == "").all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_pairs"] == n and 0 <= summary["wrong_upper_bound_low"] <= summary["wrong_upper_bound_high"] <= n
    assert 0 <= summary["wrong_upper_bound"] <= n and "wrong_estimate" not in summary
    assert set(summary["score"]["weights"]) and isinstance(summary["score"]["fallback"], bool)
    review = pd.read_csv(out / "review.csv", keep_default_na=False)
    assert list(review.columns) == ["filepath", "title", "caption_ok", "sample"] and len(review) == 5
    assert (review.caption_ok == "").all() and set(review.filepath) <= set(scores.image_path)
    src, clean = pd.read_csv(csv, sep="\t"), pd.read_csv(out / "clean.csv", sep="\t")
    gone = set(scores.image_path.head(2).map(lambda p: pathlib.Path(p).name))
    assert list(clean.columns) == list(src.columns) and len(clean) == len(src) - 2  # --drop 2, same columns
    assert clean.equals(src[~src.filepath.isin(gone)].reset_index(drop=True))
    page = (out / "report.html").read_text()
    assert page.count("<figure>") == 15 and "http" not in page  # the sample and two galleries of 5; nothing from the network
    _browser_check(out / "report.html", expected=16)  # 15 gallery images and the histograms
    top = scores.caption.iloc[0]
    dom = rendered_dom(out / "report.html", "report.html", fragment="sort=miscaption_score&order=asc")
    rows = re.findall(r'<tr><td data-v="(\d+)"', dom)
    assert f'data-rows-shown="{n}"' in dom and rows[-1] == "1" and rows[0] == str(n)  # sorted by the score, ascending
    word = top.split()[-1]
    dom = rendered_dom(out / "report.html", "report.html", fragment=f"filter={word}")
    shown = int(re.search(r'data-rows-shown="(\d+)"', dom).group(1))
    has = lambda col: scores[col].str.lower().str.contains(word.lower(), regex=False)  # noqa: E731
    assert shown == int((has("caption") | has("nearest_caption")).sum()) and 1 <= shown < n

    # the curator marks three pairs in the page: two of the random sample (one wrong), one suspect (wrong)
    id_of = dict(zip(scores.image_path, scores.id))
    a, b = (int(id_of[p]) for p in review.filepath[:2])
    c = int(scores.id[~scores.image_path.isin(review.filepath)].iloc[0])  # the most suspect pair outside the sample
    clicks = [f'.gallery .mark[data-id="{a}"] button[data-ok="no"]', f'#pairs .mark[data-id="{b}"] button[data-ok="yes"]',
              f'.gallery .mark[data-id="{c}"] button[data-ok="no"]', "#download"]
    text = clicked_download(out / "report.html", clicks, "report.html's marks", tmp_path / "download")
    dom = rendered_dom(out / "report.html", "report.html", fragment=f"mark={a}:no,{b}:yes,{c}:no&download")
    assert html.unescape(re.search(r'<pre id="download-csv"[^>]*>(.*?)</pre>', dom, re.S).group(1)) == text
    (tmp_path / "marks.csv").write_text(text)
    marks = pd.read_csv(tmp_path / "marks.csv", keep_default_na=False).set_index("filepath")
    path_of = {v: k for k, v in id_of.items()}
    assert len(marks) == 6 and (marks["sample"] == "random").sum() == 5  # the sample, and the suspect marked
    assert dict(marks.caption_ok[marks.caption_ok != ""]) == {path_of[a]: "no", path_of[b]: "yes", path_of[c]: "no"}
    r = subprocess.run([*cmd, "--reviewed", str(tmp_path / "marks.csv"), "--drop", "reviewed"], capture_output=True, text=True)
    assert r.returncode == 0 and "from your marks on 2 random pairs: about" in r.stdout, r.stderr
    clean = pd.read_csv(out / "clean.csv", sep="\t")
    assert clean.equals(src[~src.filepath.isin({path_of[a], path_of[c]})].reset_index(drop=True))  # exactly those marked wrong
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_reviewed"], summary["n_reviewed_wrong"], summary["wrong_estimate"]) == (2, 1, n / 2)
    assert (summary["wrong_low"], summary["wrong_high"]) == pytest.approx(tuple(n * v for v in audit.clopper_pearson(1, 2)))
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False).set_index("image_path")
    assert scores.caption_ok[path_of[a]] == "no" and scores.caption_ok[path_of[b]] == "yes"
    assert 'data-mark="no"' in rendered_dom(out / "report.html", "report.html")  # the page shows the marks given


def _browser_check(page: pathlib.Path, expected: int):
    dom = rendered_dom(page, "report.html")
    assert f'data-images-loaded="{expected}"' in dom, dom[-2000:]


def test_benchmark_summary_and_paired_differences_against_hand_computation():
    from scipy import stats
    rows = [dict(rate=0.1, seed=s, method=m, auroc=a, auprc=a / 2, precision_at_k=a / 3)
            for s, (x, y) in enumerate([(0.90, 0.70), (0.80, 0.75), (0.85, 0.60)])
            for m, a in (("cross-fitted CLIPMem", x), ("CLIP score, model trained on all pairs", y))]
    table = pd.DataFrame(rows)
    summary = audit.benchmark_summary(table)
    clip = summary.loc[(0.1, "cross-fitted CLIPMem")]
    half = stats.t.ppf(0.975, 2) * np.std([0.90, 0.80, 0.85], ddof=1) / np.sqrt(3)
    assert clip.auroc == pytest.approx(0.85) and clip.auroc_high == pytest.approx(0.85 + half)
    assert clip.auprc == pytest.approx(0.425) and clip.n_seeds == 3
    diff = audit.benchmark_differences(table, "cross-fitted CLIPMem").loc[(0.1, "CLIP score, model trained on all pairs")]
    d = np.array([0.20, 0.05, 0.25])
    assert diff.difference == pytest.approx(d.mean())
    assert diff.low == pytest.approx(d.mean() - stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3))


# ------------------------------------------------ the mis-caption score and its evidence, the NCR baseline

def test_caption_ranks_against_a_loop():
    g = torch.Generator().manual_seed(3)
    img, txt = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    i2t, t2i = audit.caption_ranks(img, txt)
    s = (img.double() @ txt.double().T).numpy()
    for i in range(12):
        assert i2t[i] == 1 + sum(s[i, j] > s[i, i] for j in range(12))
        assert t2i[i] == 1 + sum(s[j, i] > s[i, i] for j in range(12))
    e = torch.nn.functional.normalize(img, dim=1)
    assert audit.caption_ranks(e, e)[0].tolist() == [1] * 12  # each image's own caption first


def test_miscaption_score_is_the_weighted_mean_percentile_rank_of_its_evidence():
    df = pd.DataFrame(dict(rank_i2t_unseen=[1, 4, 2, 3], rank_t2i_unseen=[1, 3, 2, 4],
                           images_of_caption_neighbours=[0.9, 0.1, np.nan, 0.6], captions_of_image_neighbours=[0.8, 0.0, 0.2, 0.4]))
    # percentile ranks of each term, high = suspect (similarities negated); the missing one counts 1/2
    pct = np.array([[0.25, 1.0, 0.5, 0.75], [0.25, 0.75, 0.5, 1.0], [1 / 3, 1.0, 0.5, 2 / 3], [0.25, 1.0, 0.75, 0.5]])
    out = audit.miscaption_score(df, {"rank_i2t_unseen": 1, "rank_t2i_unseen": 1,
                                      "images_of_caption_neighbours": -1, "captions_of_image_neighbours": -1})
    assert out == pytest.approx(pct.mean(0)) and int(np.argmax(out)) == 1  # worst on every term
    # the shipped weights: the ranks 1/12 each, the neighbour terms 5/12 each
    assert audit.miscaption_score(df) == pytest.approx(pct.T @ [1 / 12, 1 / 12, 5 / 12, 5 / 12])
    assert audit.miscaption_score(df, {"rank_i2t_unseen": 3, "captions_of_image_neighbours": -1}) == pytest.approx(
        0.75 * pct[0] + 0.25 * pct[3])  # the weight's size weighs, its sign orients
    assert set(audit.MISCAPTION_EVIDENCE) <= set(df.columns)
    assert audit.miscaption_score(df, audit.CONSISTENCY_EVIDENCE) == pytest.approx(np.mean(
        [[1 / 3, 1.0, 0.5, 2 / 3], [0.25, 1.0, 0.75, 0.5]], axis=0))


def test_pair_losses_match_clip_loss_and_ncr_finds_the_high_loss_mode():
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1)
    txt = torch.nn.functional.normalize(img + 0.3 * torch.randn(16, 8, generator=g), dim=1)
    losses = audit.pair_losses(img, txt, 10.0)
    assert losses.mean() == pytest.approx(float(ClipLoss()(img, txt, torch.tensor(10.0))), rel=1e-5)
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(1.0, 0.1, 90), rng.normal(3.0, 0.2, 10)]  # 10 noisy pairs with high loss
    p = audit.ncr_scores(x)
    assert p[90:].min() > 0.9 and p[:90].max() < 0.1


def test_cjk_set_renders_glyphs_with_their_definitions():
    from clipmem_lib.loaders import CJK_FONT, UNIHAN, load_cjk

    if not (pathlib.Path(CJK_FONT).exists() and pathlib.Path(UNIHAN).exists()):
        pytest.skip("Debian's fonts-noto-cjk and unicode-data are not installed (make installs them where it can)")
    data = load_cjk(40, image_size=32, seed=0)
    again = load_cjk(40, image_size=32, seed=0)
    assert len(data) == 40 and data.images.fingerprint() == again.images.fingerprint()
    assert data.images.fingerprint() != load_cjk(40, image_size=32, seed=1).images.fingerprint()
    px = data.images.batch(range(40), [0] * 40, 32)
    assert px.shape == (40, 3, 32, 32) and (px.amin((1, 2, 3)) < 128).all() and len({p.numpy().tobytes() for p in px}) == 40
    assert all(0x4E00 <= cp <= 0x9FFF for cp in data.meta.codepoint) and all(c[0] for c in data.captions)
    with pytest.raises(FileNotFoundError, match="unicode-data"):
        load_cjk(5, unihan="/nonexistent/Unihan_Readings.txt.bz2")


def test_input_problems_are_counted_in_one_line_each_and_empty_pairs_left_out(tmp_path, capsys):
    csv = _photos_csv(tmp_path)
    df = pd.read_csv(csv, sep="\t")
    df.loc[1, "title"] = ""                                   # an empty caption (its pair has no other)
    df = pd.concat([df, df.iloc[[2]]])                         # p2.png in two rows
    df.loc[df.index[3], "title"] = df.loc[4, "title"]          # one caption on two pairs
    df.to_csv(csv, sep="\t", index=False)
    from clipmem_lib.loaders import load_csv

    lines, keep = audit.input_problems(load_csv(csv))
    assert len(lines) == 3 and "1 empty caption" in lines[0] and "1 pair(s) with no other caption" in lines[0]
    assert "1 image path(s) appear in more than one row" in lines[1] and "2 captions were merged" in lines[1]
    assert "2 pairs share 1 caption" in lines[2] and 1 not in keep and len(keep) == 7
    assert main(["audit", str(csv), "--out", str(tmp_path / "out"), "--folds", "5", "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert sum("warning" in e for e in err) == 3 and "7 pairs are too few for 5 folds" in err[-1]


def test_clean_csv_keeps_columns_separator_and_order(tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame(dict(title=["a", "b", "c", "d"], filepath=["x", "y", "x", "z"], extra=["1", "2", "3", "4"])).to_csv(
        src, sep=",", index=False)
    assert audit.write_clean_csv(src, tmp_path / "clean.csv", ["x"], sep=",") == 2  # both rows of image x
    assert (tmp_path / "clean.csv").read_text() == "title,filepath,extra\nb,y,2\nd,z,4\n"


# ------------------------------------------- synthetic mis-captions, the weight fit, the bound, the review


def _shape_pairs(tmp_path, n=200, size=32, seed=0):
    """``n`` correct pairs of coloured shapes (3 shapes × 4 colours: 12 distinct captions such as "a red
    circle"), randomly placed and sized, plus one image with an empty caption."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    colours = {"red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 220), "yellow": (230, 200, 20)}
    rows = []
    for i in range(n + 1):
        shape, colour = ["circle", "square", "triangle"][i % 3], list(colours)[(i // 3) % 4]
        img = Image.new("RGB", (size, size), (255, 255, 255))
        r, cx, cy = rng.integers(7, 12), rng.integers(12, size - 12), rng.integers(12, size - 12)
        box = (cx - r, cy - r, cx + r, cy + r)
        draw = ImageDraw.Draw(img)
        if shape == "circle":
            draw.ellipse(box, fill=colours[colour])
        elif shape == "square":
            draw.rectangle(box, fill=colours[colour])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colours[colour])
        img.save(tmp_path / f"s{i}.png")
        rows.append((f"s{i}.png", f"a {colour} {shape}" if i < n else ""))
    pd.DataFrame(rows, columns=["filepath", "title"]).to_csv(tmp_path / "shapes.csv", sep="\t", index=False)
    return tmp_path / "shapes.csv"


def test_synthetic_donors_are_a_derangement_within_each_fold():
    folds = assign_folds(60, 4, seed=2, pool=np.arange(3, 60))
    donor = audit.synthetic_donors(folds, seed=5)
    audited = np.flatnonzero(folds >= 0)
    assert (donor[folds < 0] == -1).all() and (donor[audited] != audited).all()
    assert (folds[donor[audited]] == folds[audited]).all()  # the caption comes from the same fold
    assert sorted(donor[audited]) == list(audited)  # every caption given once
    np.testing.assert_array_equal(donor, audit.synthetic_donors(folds, seed=5))
    assert not np.array_equal(donor, audit.synthetic_donors(folds, seed=6))


def _loop_neighbours(sim_rows, a, b, k):
    """The k best columns of each row of ``sim_rows`` (a list of lists), columns a[r] and b[r] left out."""
    return [sorted((j for j in range(len(row)) if j not in (a[r], b[r])), key=lambda j: -row[j])[:k]
            for r, row in enumerate(sim_rows)]


def test_synthetic_pairs_leave_both_donors_out_against_loops():
    # image a[r] with caption b[r]: its caption's exact copy (pair b) and its image's (pair a) would be
    # every search's nearest neighbour at cosine 1, so leaving either donor in changes each term below
    n, k = 9, 3
    a, b = np.arange(n), np.roll(np.arange(n), 2)
    img, txt = _unit(n, 6, seed=7), _unit(n, 6, seed=8)
    si, st = (img @ img.T).double().numpy(), (txt @ txt.T).double().numpy()
    nn_i = _loop_neighbours([si[a[r]] for r in range(n)], a, b, k)
    nn_t = _loop_neighbours([st[b[r]] for r in range(n)], a, b, k)
    agree, lemon = neighbour_scores(img, txt, k, pairs=(a, b))
    for r in range(n):
        ag = np.mean([st[b[r], j] for j in nn_i[r]])
        assert agree[r] == pytest.approx(ag, abs=1e-6)
        assert lemon[r] == pytest.approx(1 - float(img[a[r]] @ txt[b[r]]) + 1 - ag
                                         + np.mean([1 - si[a[r], j] for j in nn_t[r]]), abs=1e-6)
    sims = (img @ txt.T).double().numpy()
    i2t, t2i = audit.caption_ranks(img, txt, pairs=(a, b))
    for r in range(n):
        others = [j for j in range(n) if j not in (a[r], b[r])]
        assert i2t[r] == 1 + sum(sims[a[r], j] > sims[a[r], b[r]] for j in others)
        assert t2i[r] == 1 + sum(sims[j, b[r]] > sims[a[r], b[r]] for j in others)
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(0)  # sparse non-negative caption rows without ties; some share no term
    dense = rng.uniform(0.1, 1, (n, 12)) * (rng.random((n, 12)) < 0.25)
    dense[np.arange(n), rng.integers(0, 12, n)] += 1
    tv = csr_matrix(dense / np.linalg.norm(dense, axis=1, keepdims=True))
    s_t = (tv @ tv.T).toarray()
    of_caps, of_imgs = audit.neighbour_consistency(img, tv, k=2, pairs=(a, b), chunk=4)
    for r in range(n):
        nt = _loop_neighbours([s_t[b[r]]], [a[r]], [b[r]], 2)[0]
        near = [si[a[r], j] for j in nt if s_t[b[r], j] > 0]
        assert np.isnan(of_caps[r]) if not near else of_caps[r] == pytest.approx(np.mean(near), abs=1e-6)
        ni = _loop_neighbours([si[a[r]]], [a[r]], [b[r]], 2)[0]
        assert of_imgs[r] == pytest.approx(np.mean([s_t[b[r], j] for j in ni]), abs=1e-6)
    with pytest.raises(ValueError, match="pairs must be two equal-length arrays"):
        audit.caption_ranks(img, txt, pairs=(a, b[:3]))


def test_score_crossfit_scores_synthetic_pairs_like_real_ones_against_loops(monkeypatch, scenes_of):
    data = scenes_of(30, seed=4)
    k, crops = 3, 2
    folds = assign_folds(len(data), k, seed=1, pool=np.arange(2, 30))
    emb = {f"m{j}": (_unit(30, 1 + crops, 8, seed=30 + j), _unit(30, 2, 8, seed=40 + j)) for j in range(k)}
    monkeypatch.setattr(audit, "model_embeddings", lambda m, d, idx, **kw: tuple(e[idx] for e in emb[m.key]))
    real, syn, choice = score_crossfit([_Stub(f"m{j}") for j in range(k)], data, folds, n_crops=crops, n_test=5,
                                       n_neighbours=3, ctx=Context(store=RunStore(None), progress=False),
                                       return_synthetic=True)
    donor = audit.synthetic_donors(folds, 0)
    idx = np.flatnonzero(folds >= 0)
    assert list(syn["index"]) == list(idx) and list(syn.caption_index) == list(donor[idx])
    pix = audit.pixel_vectors(data.images, idx).double().numpy()
    tv = audit.caption_vectors(" ".join(data.captions[i]) for i in idx)
    s_t = (tv @ tv.T).toarray()
    pos = {int(i): p for p, i in enumerate(idx)}
    for _, row in syn.iterrows():
        i, d, f = int(row["index"]), int(row.caption_index), int(row.fold)
        img, txt = emb[f"m{f}"]
        members = [j for j in idx if folds[j] == f]
        x, t = img[:, 0], torch.nn.functional.normalize(txt.mean(1), dim=-1)
        assert row.similarity_unseen == pytest.approx(float(img[i, 0] @ txt[d].mean(0)), abs=1e-5)
        own = float(x[i] @ t[d])
        others = [j for j in members if j not in (i, d)]  # the fold, both donors left out
        assert row.rank_i2t_unseen == 1 + sum(float(x[i] @ t[j]) > own for j in others)
        assert row.rank_t2i_unseen == 1 + sum(float(x[j] @ t[d]) > own for j in others)
        pool = [pos[j] for j in idx if j not in (i, d)]  # over all audited pairs, both donors left out
        near_t = sorted(pool, key=lambda j: -s_t[pos[d], j])[:3]
        near = [pix[pos[i]] @ pix[j] for j in near_t if s_t[pos[d], j] > 0]
        assert np.isnan(row.images_of_caption_neighbours) if not near else (
            row.images_of_caption_neighbours == pytest.approx(np.mean(near), abs=1e-5))
        near_i = sorted(pool, key=lambda j: -(pix[pos[i]] @ pix[j]))[:3]
        assert row.captions_of_image_neighbours == pytest.approx(np.mean([s_t[pos[d], j] for j in near_i]), abs=1e-5)
    assert len(choice.real) == len(real) and len(choice.synthetic) == len(syn)
    np.testing.assert_allclose(real.miscaption_score, choice.real)
    np.testing.assert_allclose(real.fixed_score, audit.miscaption_score(real))


def _fold_frames(n_per_fold=40, n_folds=5, n_cols=30, seed=0):
    """Real and synthetic pairs whose ``n_cols`` terms are pure noise: nothing tells them apart."""
    rng = np.random.default_rng(seed)
    cols = {f"c{j}": 1 for j in range(n_cols)}
    make = lambda: pd.DataFrame({"fold": np.repeat(np.arange(n_folds), n_per_fold),  # noqa: E731
                                 **{c: rng.normal(size=n_folds * n_per_fold) for c in cols}})
    return make(), make(), cols


@pytest.mark.parametrize("kind", audit.FIT_KINDS)
def test_crossfit_weights_score_each_fold_with_weights_fitted_without_it(kind):
    real, syn, cols = _fold_frames(n_cols=5)
    syn["c0"] += 1.0  # one informative term
    fit = audit.crossfit_weights(real, syn, kind, cols)
    xr, xs = audit.evidence_matrix(real, real, kind, cols), audit.evidence_matrix(syn, real, kind, cols)
    for k in range(5):  # by hand: fit on the other folds' pairs only, then score fold k's
        out = real.fold != k
        w, b = audit.fit_weights(np.r_[xr[out], xs[out]], np.r_[np.zeros(out.sum()), np.ones(out.sum())], kind)
        np.testing.assert_allclose(fit["weights"][k], w, rtol=1e-6, atol=1e-9)
        sig = (lambda z: 1 / (1 + np.exp(-z))) if kind == "logistic" else (lambda z: z)
        np.testing.assert_allclose(fit["real"][~out], sig(xr[~out] @ w + (b if kind == "logistic" else 0)), rtol=1e-6)
    assert int(np.argmax(fit["weights"].mean(0))) == 0 and fit["auroc"] > 0.7
    if kind == "non-negative":
        assert (fit["weights"] >= 0).all() and fit["weights"].sum(1) == pytest.approx(np.ones(5))
    leaked = syn.copy()
    leaked.loc[leaked.fold == 2, "c3"] += 10  # fold 2's synthetic pairs made trivially separable
    again = audit.crossfit_weights(real, leaked, kind, cols)
    np.testing.assert_allclose(again["weights"][2], fit["weights"][2])  # fold 2's weights never saw them


def test_crossfit_weights_held_out_auroc_does_not_reward_overfitting():
    # 100 noise terms, 200 pairs: weights fitted on all pairs separate them in-sample; held out they are at chance
    real, syn, cols = _fold_frames(n_per_fold=20, n_cols=100, seed=1)
    fit = audit.crossfit_weights(real, syn, "logistic", cols)
    x = np.r_[audit.evidence_matrix(real, real, "logistic", cols), audit.evidence_matrix(syn, real, "logistic", cols)]
    y = np.r_[np.zeros(len(real)), np.ones(len(syn))]
    w, b = audit.fit_weights(x, y, "logistic")
    in_sample = audit.heldout_auroc(x[:len(real)] @ w, x[len(real):] @ w, real.fold, syn.fold)
    assert in_sample > 0.85  # what a weight judged on the pairs that fitted it would report
    assert abs(fit["auroc"] - 0.5) < 0.1, (fit["auroc"], in_sample)


def test_choose_score_falls_back_to_the_fixed_weights_when_the_fit_does_not_beat_them():
    rng = np.random.default_rng(3)
    n = 300
    fold = np.arange(n) % 2
    frame = lambda shift, lemon: pd.DataFrame(dict(fold=fold, **{  # noqa: E731
        c: rng.normal(size=n) + (shift * np.sign(w) if c in audit.MISCAPTION_EVIDENCE else lemon if c == "lemon" else 0)
        for c, w in audit.FIT_EVIDENCE.items()}))
    real = frame(0.0, 0.0)
    consistent = frame(0.5, 2.0)  # lemon, which the fixed weights leave out, tells them apart in every fold
    flipping = frame(0.5, np.where(fold == 0, 3.0, -3.0))  # lemon's sign flips between the folds: a fit on one misleads on the other
    c = audit.choose_score(real, consistent)
    assert not c.fallback and c.auroc_fitted > c.auroc_fixed + 0.1 and set(c.weights) == set(audit.FIT_EVIDENCE)
    assert c.weights["lemon"] == max(c.weights.values())
    c = audit.choose_score(real, flipping)
    assert c.fallback and c.auroc_fitted < c.auroc_fixed and c.weights == audit.MISCAPTION_EVIDENCE
    np.testing.assert_allclose(c.real, audit.miscaption_score(real))
    np.testing.assert_allclose(c.synthetic, audit.miscaption_score(flipping, reference=real))


@pytest.mark.parametrize("seed", range(5))
def test_the_upper_bound_covers_a_planted_wrong_share(seed):
    rng = np.random.default_rng(seed)
    n, wrong = 2000, 200  # 10% wrong: real scores a mixture of right N(0, 1) and wrong N(2, 1); synthetic ~ N(2, 1)
    real = np.r_[rng.normal(0, 1, n - wrong), rng.normal(2, 1, wrong)]
    syn = rng.normal(2, 1, n)
    share = audit.wrong_upper_bound(real, syn)
    low, high = audit.bound_interval(real, syn, n_boot=50, seed=seed)
    assert share * n >= wrong and low <= share <= high  # it covers the truth
    assert share * n < 2.5 * wrong  # and is no trivial bound (1 would cover anything)
    assert audit.wrong_upper_bound(rng.normal(2, 1, n), syn) > 0.8  # all of them like the synthetic: about all


def test_the_upper_bound_guards_its_tails():
    real = np.r_[np.zeros(990), np.ones(10)]  # 1% of the real pairs reach 0.5, where every synthetic pair lies
    syn = np.r_[np.full(95, 0.5), np.full(5, 2.0)]  # and no real pair reaches the 5 highest: a plain ratio would say 0
    assert 0.01 <= audit.wrong_upper_bound(real, syn) < 0.05


@pytest.mark.parametrize("x, n", [(0, 10), (3, 20), (7, 7), (12, 200), (1, 1)])
def test_clopper_pearson_equals_scipy(x, n):
    from scipy.stats import binomtest

    ci = binomtest(x, n).proportion_ci(confidence_level=0.95, method="exact")
    assert audit.clopper_pearson(x, n) == pytest.approx((ci.low, ci.high), abs=1e-10)
    with pytest.raises(ValueError, match="Clopper-Pearson needs"):
        audit.clopper_pearson(5, 3)


def test_read_review_parses_marks_and_names_bad_lines(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("filepath,title,caption_ok,sample\na.png,x,Yes,random\nb.png,y,0,random\nc.png,z,,random\n"
                 "d.png,w,TRUE,\ne.png,v,false,\n")
    marks = audit.read_review(f, ["a.png", "b.png", "c.png", "d.png", "e.png"])
    assert list(marks.image) == ["a.png", "b.png", "d.png", "e.png"] and list(marks.ok) == [True, False, True, False]
    assert list(marks.random) == [True, True, False, False]
    with pytest.raises(ValueError, match=r"line 3: image 'b.png' is not in the input"):
        audit.read_review(f, ["a.png", "c.png", "d.png", "e.png"])
    f.write_text("filepath,caption_ok\na.png,maybe\n")
    with pytest.raises(ValueError, match="line 2: caption_ok 'maybe' is not yes/no"):
        audit.read_review(f, ["a.png"])
    f.write_text("filepath,caption_ok\na.png,yes\na.png,no\n")
    with pytest.raises(ValueError, match="marked both right and wrong"):
        audit.read_review(f, ["a.png"])


def test_review_summary_scales_the_exact_interval_to_the_pairs():
    scores = pd.DataFrame(dict(filepath=[f"p{i}" for i in range(100)], miscaption_score=np.linspace(1, 0, 100)))
    marks = pd.DataFrame(dict(image=[f"p{i}" for i in (0, 1, 2, 50, 60, 70, 80, 90)],
                              ok=[False, False, True, True, False, True, True, True],
                              random=[False, False, False, True, True, True, True, True]))
    r = audit.review_summary(scores, marks, top=5)
    low, high = audit.clopper_pearson(1, 5)
    assert (r["n_reviewed"], r["n_reviewed_wrong"]) == (5, 1) and r["wrong_estimate"] == pytest.approx(20)
    assert (r["wrong_low"], r["wrong_high"]) == pytest.approx((100 * low, 100 * high))
    assert (r["top_k_marked"], r["top_k_wrong"]) == (3, 2) and r["top_k_precision"] == pytest.approx(2 / 3)


def _review_file(path, rows, img_key="filepath"):
    pd.DataFrame(rows, columns=[img_key, "caption_ok"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case, args, message", [
    ("drop auto", ["--drop", "auto"], "--drop auto no longer guesses"),
    ("drop reviewed, no file", ["--drop", "reviewed"], "--drop reviewed leaves out the pairs marked wrong in --reviewed"),
    ("unknown image", ["--reviewed", "REVIEW:p1.png:no,nope.png:yes"], "image 'nope.png' is not in the input"),
    ("bad mark", ["--reviewed", "REVIEW:p1.png:perhaps"], "caption_ok 'perhaps' is not yes/no"),
    ("review sample too large", ["--review-sample", "99"], "--review-sample 99: choose from 1 to the 8 audited pairs"),
    ("missing review file", ["--reviewed", "nowhere.csv"], "review file not found"),
])
def test_audit_review_mistakes_give_one_line_and_status_2(tmp_path, capsys, case, args, message):
    csv = _photos_csv(tmp_path)
    if args[-1].startswith("REVIEW:"):
        rows = [m.split(":") for m in args[-1][len("REVIEW:"):].split(",")]
        args = [*args[:-1], str(_review_file(tmp_path / "review.csv", rows))]
    assert main(["audit", str(csv), "--out", str(tmp_path / "out"), "--folds", "2", "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    if case == "drop auto":
        assert "--review-sample N" in err and "--drop K" in err
    assert not (tmp_path / "out" / "runs").exists()  # nothing trained


@pytest.mark.slow
def test_all_correct_shapes_lose_nothing_without_review_and_get_an_honest_bound(tmp_path, capsys):
    # 200 correct pairs, 12 distinct captions and one empty: the old --drop auto deleted 91 of them
    csv = _shape_pairs(tmp_path)
    out = tmp_path / "out"
    base = ["audit", str(csv), "--out", str(out), "--folds", "5", "--epochs", "10", "--batch-size", "32", "--quiet"]
    assert main([*base, "--drop", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--drop auto no longer guesses" in err and not out.exists()
    assert main([*base, "--review-sample", "40"]) == 0
    assert not (out / "clean.csv").exists()  # no --drop: nothing deleted
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_pairs"] == 200 and summary["wrong_upper_bound"] <= 20, summary  # 10% at most; the truth is 0
    assert summary["wrong_upper_bound_low"] <= summary["wrong_upper_bound_high"]
    assert "upper bound, not a count" in (out / "report.html").read_text()
    review = pd.read_csv(out / "review.csv", keep_default_na=False).assign(caption_ok="yes")  # the curator: all right
    review.to_csv(tmp_path / "marks.csv", index=False)
    assert main([*base, "--reviewed", str(tmp_path / "marks.csv"), "--drop", "reviewed"]) == 0
    assert (out / "clean.csv").read_text() == csv.read_text()  # nothing marked wrong, nothing left out
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_reviewed"], summary["n_reviewed_wrong"], summary["wrong_estimate"], summary["wrong_low"]) == (40, 0, 0, 0)
    assert summary["wrong_high"] == pytest.approx(200 * audit.clopper_pearson(0, 40)[1])
