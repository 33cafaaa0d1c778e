"""The cost plan (plan.py, `book plan`): each chapter's trainings from its parameters, repeats across
chapters counted once, the stored ones marked from the last run's ledger, and the cost arithmetic.  The
plan against a real smoke run of the whole book is checked in test_notebooks.py."""
import json

import numpy as np
import pandas as pd
import pytest

from clipmem_lib import audit, book, fitting, plan
from clipmem_lib.fitting import ClipJob, VisionJob
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.store import RunStore
from clipmem_lib.sweeps import table1_settings
from clipmem_lib.train import TrainConfig
from clipmem_lib.vision import VisionConfig

SMALL = dict(n_pairs=300, n_candidates=30, n_external=30, epochs=3, seeds=2)


def test_audit_folds_train_on_every_pair_outside_their_fold():
    for p, k in [(301, 2), (1000, 5), (37, 3)]:
        folds = audit.assign_folds(p, k, seed=4)
        want = sorted([int(((folds >= 0) & (folds != j)).sum()) for j in range(k)] + [p])
        got = plan.chapter_trainings("09_audit", {**SMALL, "n_pairs": p, "audit_pairs": -1, "audit_folds": k,
                                                  "audit_rates": [0.1], "seeds": 1, "cjk_pairs": 0})
        assert sorted(t.n_train for t in got) == want


def test_repeats_across_chapters_are_one_training_each():
    given = {f"{s}": SMALL for s in ("01_metric", "02_memorisation", "03_modalities")}
    rows = plan.book_trainings(given)
    new = rows.groupby("chapter").new.sum()
    assert new.to_dict() == {"01_metric": 4, "02_memorisation": 2, "03_modalities": 0}  # 02: poisoned f; g reused
    assert rows.groupby("chapter").size().to_dict() == {"01_metric": 4, "02_memorisation": 8, "03_modalities": 4}
    assert (rows.n_train == 300 - 30 - 30).all() and (rows.samples == 240 * 3).all()


def test_removal_counts_follow_the_grid_and_all_of_s_c_is_one_set():
    rows = plan.chapter_trainings("07_removal", {**SMALL, "removal_fractions": [0.2, 0.4, 1.0], "poison_fraction": 0.4,
                                                 "removal_pool": "S_C"})
    removal = [t for t in rows if isinstance(t.ident[-1], tuple)]
    # seed 0: clean 2 strategies and planted 4 over k = 6, 12, 30; seed 1: 2 strategies at k_peak = 12 and k_late = 30
    assert len(removal) == 2 * 3 + 4 * 3 + 2 * 2
    at_all = {t.ident for t in removal if t.n_train == 300 - 30 - 30 - 30}
    assert len(at_all) == 3  # removing all of S_C: one set whatever the strategy (clean seed 0, planted seeds 0, 1)


def test_removal_from_all_of_f_empties_s_s_in_the_chapter_and_in_the_plan(tmp_path):
    from types import SimpleNamespace
    from clipmem_lib import chapter
    from clipmem_lib.schema import chapter_parameters

    P = SimpleNamespace(**{**{n: d.default for n, d in chapter_parameters("07_removal").items()},
                           **SMALL, "runs_dir": str(tmp_path)})
    assert P.removal_pool == "all" and chapter.split_sizes(P, 300) == (135, 30, 0)  # S_C, S_I halve 300 - 30
    assert chapter.split_sizes(SimpleNamespace(**{**vars(P), "removal_pool": "S_C"}), 300) == (30, 30, None)
    with pytest.raises(ValueError, match="removal_pool must be one of 'all', 'S_C', got 'S_S'"):
        chapter.split_sizes(SimpleNamespace(**{**vars(P), "removal_pool": "S_S"}), 300)
    with pytest.raises(ValueError, match="number of pairs"):
        chapter.split_sizes(P, None)
    S = chapter.setup(P)
    sp = S.splits
    assert len(sp.shared) == 0 and len(sp.candidates) == len(sp.independent) == 135 and len(sp.external) == 30
    assert np.array_equal(np.sort(sp.f_indices), sp.candidates)  # f's whole training set is the removal pool
    assert len(np.unique(np.concatenate([sp.candidates, sp.independent, sp.external]))) == 300
    rows = plan.chapter_trainings("07_removal", {**SMALL, "removal_fractions": [0.2, 0.4, 0.8], "poison_fraction": 0.4})
    assert {t.n_train for t in rows if t.what.startswith(("f, planted", "g, planted"))} == {135}
    assert sorted({t.n_train for t in rows if "without" in t.what}) == [135 - 108, 135 - 54, 135 - 27]


def test_table1_without_generated_images_has_the_real_image_cases_only():
    base = TrainConfig(epochs=2)
    assert list(table1_settings(base, 1)) == ["1 image, 1 caption", "1 image, 5 captions"]
    five = table1_settings(base, 6)
    assert len(five) == 5 and five["5 generated images, 1 caption"].image_variants == (1, 2, 3, 4, 5)


def test_cost_table_counts_new_unstored_samples_at_the_rate():
    rows = plan.book_trainings({"01_metric": SMALL, "02_memorisation": SMALL})
    costs = plan.cost_table(rows, stored={0}, samples_per_s=36.0)
    assert costs.loc["01_metric", "to train"] == 3 and costs.loc["02_memorisation", "to train"] == 2
    assert costs.loc["total", "samples"] == 5 * 720
    assert costs.loc["total", "hours"] == pytest.approx(5 * 720 / 36 / 3600)


def test_a_run_of_chapters_that_train_nothing_plans_nothing():
    costs = plan.cost_table(plan.book_trainings({"99_summary": {}}), samples_per_s=1.0)
    assert costs.loc["total"].to_dict() == dict(asked=0, new=0, stored=0, **{"to train": 0}, samples=0, hours=0.0)


def _entry(root, kind, key, model, rates):
    d = root / kind / key
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": {"model_name": model}}))
    pd.DataFrame({"epoch": range(len(rates)), "samples_per_s": rates}).to_csv(d / "history.csv", index=False)


def test_measured_rate_is_the_median_of_the_stores_trainings(tmp_path):
    _entry(tmp_path, "clip", "a", "clipmem-tiny", [100, 200, 300])
    _entry(tmp_path, "clip", "b", "clipmem-tiny", [400, 400, 400])
    _entry(tmp_path, "clip", "c", "clipmem-tiny", [1000, 1000, 1000])
    _entry(tmp_path, "dino", "d", "clipmem-tiny", [50])
    _entry(tmp_path / ".corrupt", "clip-x", "e", "clipmem-tiny", [1])  # set aside: not a rate
    (tmp_path / "clipmem" / "f").mkdir(parents=True)  # a table, not a training
    (tmp_path / "clipmem" / "f" / "config.json").write_text("{}")
    rates = RunStore(tmp_path).throughput()
    assert rates == {("clip", "clipmem-tiny"): 400.0, ("dino", "clipmem-tiny"): 50.0}
    assert RunStore(tmp_path / "absent").throughput() == {} and RunStore(None).throughput() == {}


def test_a_pool_gets_its_longest_trainings_first():
    data = make_scenes(SceneConfig(n=40, image_size=16, seed=0))
    clip = lambda n, epochs: ClipJob(data, np.arange(n), config=TrainConfig(epochs=epochs))
    dino = VisionJob("dino", data, np.arange(10), config=VisionConfig(epochs=4))  # 40 samples at 10/s: 4 s
    jobs = [clip(20, 2), clip(40, 10), dino, clip(30, 1)]  # 40, 400, 40, 30 samples at 100/s
    rates = {("clip", "clipmem-tiny"): 100.0, ("dino", "clipmem-tiny"): 10.0}
    assert fitting.longest_first(jobs, rates) == [jobs[1], jobs[2], jobs[0], jobs[3]]
    assert fitting.longest_first(jobs, {}) == [jobs[1], jobs[0], jobs[2], jobs[3]]  # no rates: by samples, stable
    other = {("clip", "clipmem-tiny"): 100.0, ("supervised", "clipmem-tiny"): 1.0}  # dino unmeasured: their median
    assert fitting.longest_first(jobs, other) == [jobs[1], jobs[2], jobs[0], jobs[3]]


def test_the_last_runs_ledger_marks_what_is_in_the_store(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    (out / "trainings").mkdir(parents=True)
    lines = [dict(kind="clip", model="clipmem-tiny", n_train=240, epochs=3, key=k, trained=True) for k in "abcd"]
    (out / "trainings" / "01_metric.jsonl").write_text("\n".join(map(json.dumps, lines)))
    _entry(runs, "clip", "b", "clipmem-tiny", [720.0])
    rows, costs, note = book.training_plan({"01_metric": SMALL}, runs, out)
    assert list(rows.key) == list("abcd") and rows.stored.sum() == 1
    assert costs.loc["total", "to train"] == 3 and costs.loc["total", "hours"] == pytest.approx(3 * 720 / 720 / 3600)
    assert "720 samples/s" in note


def test_plan_command_costs_the_paper_profile_without_its_data(capsys):
    assert book.main(["plan", "--profile", "paper", "--summary", "--samples-per-s", "900"]) == 0
    out = capsys.readouterr().out
    total = [line for line in out.splitlines() if line.startswith("total")][0].split()
    assert int(total[2]) > 100 and float(total[-1]) > 100  # hundreds of GPU-hours at paper scale, 3 seeds
    assert book.main(["plan", "--profile", "smoke", "--set", "seeds=x"]) == 2
    assert "seeds" in capsys.readouterr().err


def test_a_design_with_seeds_of_its_own_is_planned_at_them():
    from clipmem_lib.plan import chapter_trainings

    def noise_seeds_of(given):
        return sorted({int(t.what.rsplit("seed ", 1)[1]) for t in chapter_trainings("06_mitigation", given)
                       if t.what.split(", ")[1].startswith("std ")})
    assert noise_seeds_of({"seeds": 2}) == [0, 1]
    assert noise_seeds_of({"seeds": 2, "noise_seeds": 4}) == [0, 1, 2, 3]
    others = lambda given: {t.what for t in chapter_trainings("06_mitigation", given)  # noqa: E731
                            if not t.what.split(", ")[1].startswith("std ")}
    assert others({"seeds": 2, "noise_seeds": 4}) == others({"seeds": 2})  # the other sweeps keep the chapter's seeds
