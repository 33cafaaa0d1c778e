"""The generated caption style (the appendix's GPT-3.5 stand-in, Tables 4/7) and Fig. 12's caption similarity."""
import itertools
import json

import numpy as np
import pytest
import torch

from clipmem_lib import scenes as S
from clipmem_lib.data import PairData, TensorImages
from clipmem_lib.embed import caption_similarity
from clipmem_lib.models import CaptionTokenizer, create_model, model_config, tokenizer_for
from clipmem_lib.scenes import make_scenes, restyle_captions
from clipmem_lib.splits import plant_miscaptions


@pytest.fixture(scope="module")
def data(scenes_of):
    return scenes_of(200, seed=5)


@pytest.fixture(scope="module")
def generated(data):
    return restyle_captions(data, "generated")


def _jaccard(captions):
    """Mean pairwise token-set Jaccard of one pair's captions."""
    sets = [set(c.replace(",", " ,").split()) for c in captions]
    return np.mean([len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)])


def test_generated_keeps_images_labels_and_meta(data, generated):
    assert generated.images is data.images and generated.images.fingerprint() == data.images.fingerprint()
    assert torch.equal(generated.images.pixels, make_scenes(n=200, seed=5).images.pixels)
    assert np.array_equal(generated.labels, data.labels) and len(generated) == len(data)
    assert all(len(c) == 5 for c in generated.captions) and generated.n_captions == 5
    assert generated.meta[data.meta.columns].equals(data.meta)
    assert (generated.meta.caption_style == "generated").all() and "generated" in generated.name
    assert generated.caption_digest() != data.caption_digest()
    assert "caption_style" not in data.meta  # the original is not modified


FACT_WORDS = set(S.COLOURS) | set(S.SHAPES) | set(S.RARE_SHAPES) | set(S.SIZES) | set(S.BACKGROUNDS) | set(
    S.PATTERNS) | set(S.NUMBERS) | {w for p in S.POSITIONS for w in p.split()} | {"1", "2"}


def _facts(caption: str) -> set:
    return {t for t in caption.replace(",", " ").split() if t in FACT_WORDS}


def test_each_generated_caption_states_its_templates_facts(data, generated):
    for i, (tpl, gen) in enumerate(zip(data.captions, generated.captions)):
        w = data.meta.concept_word[i]
        assert [_facts(c) for c in gen] == [_facts(c) for c in tpl], (tpl, gen)  # same information, caption by caption
        assert all(w in c and data.meta.colour[i] in c for c in gen) and len(set(gen)) == 5


def test_generated_is_deterministic_and_in_the_templates_order(data, generated):
    assert restyle_captions(data, "generated").captions == generated.captions
    orders = [list(map(int, o.split())) for o in generated.meta.template_order]
    forms = [S._generated_captions(json.loads(d), w) for d, w in zip(generated.meta.description, generated.meta.concept_word)]
    assert all(caps == [f[t] for t in o] for caps, f, o in zip(generated.captions, forms, orders))
    assert len({o[0] for o in orders}) == 5  # "first caption only" is a random form, the same one in both styles


def test_template_style_is_the_original_captions(data, generated):
    same = restyle_captions(data, "template")
    assert same.captions == data.captions and same.caption_digest() == data.caption_digest()
    assert same.images is data.images and (same.meta.caption_style == "template").all() and "template" in same.name
    back = restyle_captions(generated, "template")  # rebuilt from the descriptions, in make_scenes' order
    assert back.captions == data.captions and back.name == same.name
    assert restyle_captions(back, "generated").captions == generated.captions


def test_restyle_errors(data):
    with pytest.raises(ValueError, match="unknown caption style 'gpt'.*template, generated"):
        restyle_captions(data, "gpt")
    other = PairData([["a cat"]] * 2, TensorImages(torch.zeros(2, 1, 3, 8, 8, dtype=torch.uint8), "x"), name="csv")
    with pytest.raises(ValueError, match="csv: restyle_captions needs built-in scenes"):
        restyle_captions(other, "generated")
    bad = plant_miscaptions(data, np.arange(50), 0.2, seed=0)
    with pytest.raises(ValueError, match="restyle first"):
        restyle_captions(bad, "generated")
    bad = plant_miscaptions(restyle_captions(data, "generated"), np.arange(50), 0.2, seed=0)
    assert restyle_captions(bad, "generated").captions == bad.captions  # the same style: kept as they are


def test_generated_captions_are_lexically_more_uniform(data, generated):
    tpl = np.mean([_jaccard(c) for c in data.captions])
    gen = np.mean([_jaccard(c) for c in generated.captions])
    assert gen > tpl + 0.1, (tpl, gen)  # 0.39 against 0.26 (one frame against five): cf. the paper's 0.851 vs 0.798


def test_generated_captions_fit_the_tiny_context(generated):
    ctx = model_config("clipmem-tiny")["text_cfg"]["context_length"]
    full = CaptionTokenizer(77)
    n_tokens = lambda text: int((full([text]) != 0).sum())  # start and end tokens included
    words = ["".join(p) for p in itertools.product(S._SYLLABLES, repeat=3)]
    longest = lambda xs: max(xs, key=n_tokens)
    # the longest scene there can be: three objects, a two-token rare shape, the longest concept word
    big = dict(size="large", colour=longest(list(S.COLOURS)), shape=longest(S.RARE_SHAPES), pos=0)
    small = dict(size=longest(S.SIZES), colour=longest(list(S.COLOURS)), shape=longest(S.SHAPES), pos=1)
    desc = dict(objects=[big, small, small], bg=longest(list(S.BACKGROUNDS)), pattern=longest(S.PATTERNS))
    assert max(map(n_tokens, S._generated_captions(desc, longest(words)))) <= ctx
    assert tokenizer_for("clipmem-tiny", generated).context_length <= ctx


def test_caption_similarity_matches_brute_force(generated, data):
    sets = [list(c) for c in generated.captions[:6]] + [[generated.captions[6][0]] * 3, generated.captions[7][:2],
                                                         data.captions[8]]
    tok = tokenizer_for("clipmem-tiny", generated)
    model = create_model("clipmem-tiny", vocab_size=tok.vocab_size, seed=0, context_length=tok.context_length).eval()
    got = caption_similarity(model, tok, sets, device="cpu", batch_size=7)
    want = []
    with torch.no_grad():
        for caps in sets:
            e = [model.encode_text(tok([c]), normalize=True)[0] for c in caps]
            want.append(np.mean([float(e[i] @ e[j]) for i in range(len(e)) for j in range(i + 1, len(e))]))
    assert got.shape == (len(sets),) and np.allclose(got, want, atol=1e-5)
    assert got[6] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="at least two captions"):
        caption_similarity(model, tok, [["one caption"]], device="cpu")
