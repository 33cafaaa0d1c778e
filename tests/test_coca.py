"""CoCa (App. A.6's second multimodal model): the model factory, its contrastive plus captioning loss,
and training and CLIPMem with the CLIP protocol."""
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, CoCaLoss

from clipmem_lib.fitting import fit_clip
from clipmem_lib.measure import score_clipmem
from clipmem_lib.models import create_model, image_size, is_coca, model_for, tokenizer_for
from clipmem_lib.runtime import Context
from clipmem_lib.splits import make_splits
from clipmem_lib.store import RunStore
from clipmem_lib.train import COCA_LOSS_WEIGHTS, TrainConfig, _Forward, caption_loss, train_clip


@pytest.fixture(scope="module")
def small(scenes_of):
    data = scenes_of(150, seed=3)
    tok = tokenizer_for("clipmem-coca", data)
    return data, tok, tok.tokenize_pairs(data)


def test_create_model_builds_a_seeded_coca_with_the_overrides():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    m = create_model("clipmem-coca", vocab_size=300, context_length=20, seed=0)
    assert torch.equal(torch.rand(1), before)  # the seeded init leaves the caller's RNG alone
    assert isinstance(m, open_clip.CoCa) and is_coca(m) and not is_coca(create_model("clipmem-tiny"))
    assert image_size(m) == 32 and m.visual.output_tokens and m.visual.attn_pool is not None
    assert m.text.token_embedding.num_embeddings == 300 and m.text_decoder.text_projection.shape == (64, 300)
    assert m.text.positional_embedding.shape[0] == 21  # 20 tokens + CoCa's appended CLS
    assert m.text_decoder.context_length == m.context_length == 20 and m.text_decoder.attn_mask.shape == (20, 20)
    same = create_model("clipmem-coca", 300, seed=0, context_length=20)
    other = create_model("clipmem-coca", 300, seed=1, context_length=20)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), same.state_dict().values()))
    assert not torch.equal(m.text_decoder.text_projection, other.text_decoder.text_projection)
    proj = m.text_decoder.text_projection  # open_clip leaves it torch.empty: it must be initialised here
    assert torch.isfinite(proj).all() and 0.8 < proj.std().item() * 64 ** 0.5 < 1.2


def test_unsupported_configs_are_refused_clearly():
    with pytest.raises(ValueError, match="Hugging Face text tower"):
        create_model("coca_roberta-ViT-B-32")
    with pytest.raises(ValueError, match="CustomTextCLIP"):
        create_model("ViT-B-16-SigLIP")


def test_the_sized_tokenizer_lines_up_text_tower_and_decoder(small):
    data, tok, tokens = small
    assert tok.context_length == tokenizer_for("clipmem-tiny", data).context_length < 32
    assert (tokens[..., -1] != 0).any()  # the longest caption fills the trimmed context
    m = model_for("clipmem-coca", tok)
    out = m(torch.zeros(3, 3, 32, 32), tokens[:3, 0])
    assert m.text.positional_embedding.shape[0] == tok.context_length + 1
    assert m.text_decoder.attn_mask.shape[0] == tok.context_length
    assert out["logits"].shape == (3, tok.context_length - 1, tok.vocab_size)
    assert torch.equal(out["labels"], tokens[:3, 0, 1:])


def test_caption_and_contrastive_terms_match_brute_force(small):
    data, tok, tokens = small
    m = model_for("clipmem-coca", tok, seed=0).eval()
    idx = [0, 5, 9, 17]
    img = torch.randn(len(idx), 3, 32, 32, generator=torch.Generator().manual_seed(0))
    txt = tokens[idx, 0]
    assert (txt[:, 1:] == 0).any() and (txt[:, 1:] != 0).any(-1).all()  # some padding to ignore
    with torch.no_grad():
        img_f, txt_f, scale, cap = _Forward(m)(img, txt)
        # by hand: decoder on the image tokens and the text tokens but the last, predicting the next token
        _, img_tokens = m.visual(img)
        _, txt_tokens = m.text(txt)
        logits = m.text_decoder(img_tokens, txt_tokens[:, :-1])
    terms = [-torch.log_softmax(logits[b, t].double(), -1)[txt[b, t + 1]]
             for b in range(len(idx)) for t in range(txt.shape[1] - 1) if txt[b, t + 1] != 0]
    assert cap.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
    assert cap.item() != pytest.approx(F.cross_entropy(logits.permute(0, 2, 1), txt[:, 1:]).item(), rel=1e-3)
    # what CLIPMem embeds is what the contrastive term trains
    assert torch.allclose(img_f, m.encode_image(img, normalize=True), atol=1e-6)
    assert torch.allclose(F.normalize(txt_f, dim=-1), m.encode_text(txt, normalize=True), atol=1e-6)
    contrastive = ClipLoss()(img_f, F.normalize(txt_f, dim=-1), scale)
    sims = scale * img_f.double() @ F.normalize(txt_f, dim=-1).double().T
    labels = torch.arange(len(idx))
    by_hand = (F.cross_entropy(sims, labels) + F.cross_entropy(sims.T, labels)) / 2
    assert contrastive.item() == pytest.approx(by_hand.item(), rel=1e-5)
    coca_loss = CoCaLoss(caption_loss_weight=COCA_LOSS_WEIGHTS["caption"], clip_loss_weight=COCA_LOSS_WEIGHTS["contrastive"])
    ref_clip, ref_cap = coca_loss(img_f, txt_f, logits, txt[:, 1:], scale)  # open_clip's, weighted
    assert ref_cap.item() == pytest.approx(2.0 * cap.item(), rel=1e-5)
    assert ref_clip.item() == pytest.approx(contrastive.item(), rel=1e-5)
    assert caption_loss(logits, txt[:, 1:]).item() == pytest.approx(cap.item())


def test_loss_weights_are_open_clip_trains_defaults():
    params = pytest.importorskip("open_clip_train.params")
    args = params.parse_args([])
    assert COCA_LOSS_WEIGHTS == dict(contrastive=args.coca_contrastive_loss_weight,
                                     caption=args.coca_caption_loss_weight)
    assert COCA_LOSS_WEIGHTS == dict(contrastive=1.0, caption=2.0)


def test_clip_forward_is_unchanged(small):
    data, _, _ = small
    tok = tokenizer_for("clipmem-tiny", data)
    m = model_for("clipmem-tiny", tok).eval()
    img, txt = torch.randn(2, 3, 32, 32), tok.tokenize_pairs(data)[:2, 0]
    with torch.no_grad():
        img_f, raw, scale, cap = _Forward(m)(img, txt)
        assert cap is None and torch.equal(raw, m.encode_text(txt))
        assert torch.equal(img_f, m.encode_image(img, normalize=True))


def test_text_noise_is_refused_for_coca(small):
    data, tok, tokens = small
    with pytest.raises(ValueError, match="text_noise_std=0.1 .* not supported for CoCa"):
        train_clip(model_for("clipmem-coca", tok), data.images, tokens, range(64),
                   TrainConfig(epochs=1, batch_size=32, text_noise_std=0.1), progress=False, device="cpu")


def test_coca_trains_with_the_clip_protocol_and_clipmem_scores_it(small, tmp_path, one_thread):
    data, _, _ = small
    splits = make_splits(len(data), n_candidates=20, n_external=30, seed=0)
    ctx, cfg = Context(RunStore(tmp_path), device="cpu", progress=False), TrainConfig(epochs=6, batch_size=32)
    f = fit_clip(data, splits.f_indices, "clipmem-coca", cfg, ctx=ctx)
    g = fit_clip(data, splits.g_indices, "clipmem-coca", cfg, ctx=ctx)
    assert is_coca(f.model) and is_coca(g.model)
    h = f.history
    assert h[-1]["loss"] < h[0]["loss"] and h[-1]["caption_loss"] < h[0]["caption_loss"]
    for e in h:  # the total is open_clip_train's weighted sum of the two terms
        assert e["loss"] == pytest.approx(e["contrastive_loss"] + 2.0 * e["caption_loss"], rel=1e-6)
    assert h[0]["caption_loss"] < np.log(f.tokenizer.vocab_size) + 0.5  # starts near chance, not at garbage
    again = fit_clip(data, splits.f_indices, "clipmem-coca", cfg, ctx=ctx)  # from the store, same weights
    assert again.key == f.key
    assert torch.equal(again.model.text_decoder.text_projection, f.model.text_decoder.text_projection)
    scores = score_clipmem(f, g, data, splits, n_crops=2, n_test=20, ctx=ctx)
    assert len(scores) == len(splits.shared) + 2 * len(splits.candidates) + len(splits.external)
    assert np.isfinite(scores.select_dtypes("number").to_numpy(dtype=float)).all()
