"""The trainer: caption/variant choice, text noise, schedule, determinism and resume."""
import numpy as np
import pytest
import torch

from clipmem_lib.models import create_model, model_for, tokenizer_for

from clipmem_lib.engine import lr_at
from clipmem_lib.train import TrainConfig, choose_views, noisy_text_features, train_clip
from clipmem_lib.embed import embed_texts


@pytest.fixture(scope="module")
def tiny(scenes_of):
    data = scenes_of(160, seed=1, n_variants=2)
    tok = tokenizer_for("clipmem-tiny", data)
    return data, tok, tok.tokenize_pairs(data)


def test_balanced_captions_used_equally_often():
    counts = np.zeros((50, 5), int)
    for e in range(10):
        counts[np.arange(50), choose_views(50, range(5), "balanced", e, seed=0, salt=1)] += 1
    assert (counts == 2).all()  # 10 epochs, 5 captions: each caption exactly twice per pair
    rnd = np.zeros((50, 5), int)
    for e in range(10):
        rnd[np.arange(50), choose_views(50, range(5), "random", e, seed=0, salt=1)] += 1
    assert rnd.sum() == 500 and (rnd != 2).any()  # random is not balanced
    assert (choose_views(50, range(5), "first", 3, 0, 1) == 0).all()
    assert set(choose_views(500, (1, 3), "random", 0, 0, 2)) == {1, 3}


def test_text_noise_scale_and_placement():
    raw = torch.randn(4000, 64) * 10
    g = torch.Generator().manual_seed(0)
    clean = noisy_text_features(raw, 0.0, "raw", g)
    assert torch.allclose(clean, torch.nn.functional.normalize(raw, dim=-1))
    for at in ("raw", "normalized"):
        out = noisy_text_features(raw, 0.15, at, torch.Generator().manual_seed(0))
        assert torch.allclose(out.norm(dim=-1), torch.ones(4000), atol=1e-5)
        cos = (out * clean).sum(-1).mean()
        # on raw features (norm ~80) noise of norm 1.2 barely turns them; on unit vectors it dominates
        assert (cos > 0.99) if at == "raw" else (0.4 < cos < 0.8)


def test_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 100, 1.0, 0.05) for s in range(100)]
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.01


@pytest.mark.slow
def test_noise_in_training_not_in_evaluation(tiny):
    data, tok, tokens = tiny
    runs = {}
    for std in (0.0, 1.0):
        m = model_for("clipmem-tiny", tok, seed=0)
        h = train_clip(m, data.images, tokens, range(128), TrainConfig(epochs=1, batch_size=64, text_noise_std=std),
                       progress=False, device="cpu")
        runs[std] = (h, m)
    assert runs[0.0][0][0]["noise_to_signal"] == 0 and runs[1.0][0][0]["noise_to_signal"] > 0.05
    assert runs[0.0][0][0]["loss"] != runs[1.0][0][0]["loss"]  # the noise changed training
    m = runs[1.0][1]
    e1, e2 = embed_texts(m, tokens, range(20)), embed_texts(m, tokens, range(20))
    assert torch.equal(e1, e2)  # evaluation is deterministic: no noise there
    with torch.no_grad():
        ref = m.encode_text(tokens[:20, 0], normalize=True)
    assert torch.allclose(e1[:, 0], ref, atol=1e-6)


@pytest.mark.slow
def test_same_seed_repeats_exactly_and_resume_equals_uninterrupted(tiny, tmp_path):
    data, tok, tokens = tiny
    cfg = TrainConfig(epochs=3, batch_size=32, caption_mode="random", image_variants=(0, 1))

    def fresh():
        return model_for("clipmem-tiny", tok, seed=0)

    a, b = fresh(), fresh()
    ha = train_clip(a, data.images, tokens, range(128), cfg, progress=False, device="cpu")
    train_clip(b, data.images, tokens, range(128), cfg, progress=False, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    class Stop(Exception):
        pass

    def interrupt(epoch, _):
        if epoch == 1:
            raise Stop

    c, ckpt = fresh(), tmp_path / "ckpt.pt"
    with pytest.raises(Stop):
        train_clip(c, data.images, tokens, range(128), cfg, progress=False, device="cpu", checkpoint=ckpt,
                   on_epoch_end=interrupt)
    d = fresh()  # a new process would start from scratch weights and find the checkpoint
    hd = train_clip(d, data.images, tokens, range(128), cfg, progress=False, device="cpu", checkpoint=ckpt)
    assert len(hd) == 3 and [h["loss"] for h in hd] == pytest.approx([h["loss"] for h in ha])
    for (k, x), y in zip(a.state_dict().items(), d.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), k


@pytest.mark.slow
def test_training_lowers_loss_below_chance(tiny):
    data, tok, tokens = tiny
    m = model_for("clipmem-tiny", tok, seed=0)
    h = train_clip(m, data.images, tokens, range(128), TrainConfig(epochs=40, batch_size=128), progress=False,
                   device="cpu")
    assert h[0]["loss"] > 4.0 and h[-1]["loss"] < 0.4 * np.log(128)  # ln(128) = 4.85 is chance: it overfits 128 pairs


@pytest.mark.parametrize("kw,msg", [(dict(caption_mode="best"), "caption_mode"), (dict(epochs=0), "epochs"),
                                    (dict(text_noise_at="middle"), "text_noise_at")])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def test_train_input_errors(tiny):
    data, tok, tokens = tiny
    m = model_for("clipmem-tiny", tok)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_clip(m, data.images, tokens, range(10), TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="variant"):
        train_clip(m, data.images, tokens, range(128), TrainConfig(epochs=1, image_variants=(0, 5)), progress=False)
    with pytest.raises(ValueError, match="unknown model config 'ViT-Q'"):
        create_model("ViT-Q")


@pytest.mark.slow
def test_single_caption_data_trains_first_mode_and_rejects_multi_caption_modes(tiny):
    """CSV / webdataset pairs often have one caption: "first" needs one, "random" over 5 needs five."""
    data, tok, tokens = tiny
    one = tokens[:, :1]
    m = model_for("clipmem-tiny", tok)
    hist = train_clip(m, data.images, one, range(128), TrainConfig(epochs=1, batch_size=64), progress=False)
    assert len(hist) == 1 and np.isfinite(hist[0]["loss"])
    with pytest.raises(ValueError, match="needs that many captions per pair, but the data has 1"):
        train_clip(m, data.images, one, range(128), TrainConfig(epochs=1, caption_mode="random"), progress=False)


def test_the_tokenizer_is_sized_for_the_data_and_the_model_for_the_tokenizer(tiny):
    """The small configs' text context is the longest caption (start and end tokens included), so no
    caption is cut and no step computes padding; the paper's models keep open_clip's 77 tokens."""
    data, tok, tokens = tiny
    longest = max(len(tok._tok.encode(c)) + 2 for cs in data.captions for c in cs)
    assert tok.context_length == longest < 32 and (tokens[..., -1] != 0).any()  # some caption fills it
    assert tokenizer_for("ViT-B-32", data).context_length == 77
    m = model_for("clipmem-tiny", tok)
    assert m.positional_embedding.shape[0] == longest and m.encode_text(tokens[:2, 0]).shape == (2, 64)


def test_the_sized_tokenizer_is_built_once_per_corpus(tiny, monkeypatch):
    import clipmem_lib.models as models
    from clipmem_lib.splits import plant_miscaptions

    data, tok, _ = tiny
    assert tokenizer_for("clipmem-tiny", data) is tok  # the fixture's: no second pass over the corpus
    built = []
    monkeypatch.setattr(models, "CaptionTokenizer", lambda *a: built.append(a) or tok)
    other = plant_miscaptions(data, range(10), 0.5, seed=0)  # other captions: sized anew
    tokenizer_for("clipmem-tiny", other)
    tokenizer_for("clipmem-tiny", other)
    assert len(built) == 2  # the longest-caption pass and the sized tokenizer, once


@pytest.fixture(scope="module")
def book_sized(scenes_of):
    """The end-to-end test's data (chapter 02's 2,000 scenes): same shapes, so this process reuses its compiled graph."""
    data = scenes_of(2000)
    tok = tokenizer_for("clipmem-tiny", data)
    return data, tok, tok.tokenize_pairs(data)


@pytest.mark.slow
def test_a_compiled_training_resumes_bit_for_bit_and_its_key_says_compiled(book_sized, tmp_path):
    from clipmem_lib.fitting import COMPILE_FROM, ClipJob

    data, tok, tokens = book_sized
    cfg = TrainConfig(epochs=3, batch_size=128)
    run = dict(progress=False, device="cpu", compile=True)

    def fresh():
        return model_for("clipmem-tiny", tok, seed=0)

    class Stop(Exception):
        pass

    def interrupt(epoch, _):
        if epoch == 1:
            raise Stop

    a, c, d, eager = fresh(), fresh(), fresh(), fresh()
    train_clip(a, data.images, tokens, range(256), cfg, **run)
    with pytest.raises(Stop):
        train_clip(c, data.images, tokens, range(256), cfg, checkpoint=tmp_path / "ckpt.pt", on_epoch_end=interrupt, **run)
    train_clip(d, data.images, tokens, range(256), cfg, checkpoint=tmp_path / "ckpt.pt", **run)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), d.state_dict().values()))
    train_clip(eager, data.images, tokens, range(256), cfg, progress=False, device="cpu")
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), eager.state_dict().values()))
    # compiling changes the numbers, so the key does: a book-sized job compiles, a tiny one keeps its eager key
    big, small = (ClipJob(data, range(n), config=TrainConfig(epochs=80)) for n in (COMPILE_FROM // 80, COMPILE_FROM // 80 - 1))
    assert big.compile and not small.compile and big.key()["compiled"] is True and "compiled" not in small.key()
    assert ClipJob(data, range(1800), "clipmem-coca", TrainConfig(epochs=80)).compile is False
