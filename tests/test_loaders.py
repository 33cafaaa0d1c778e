"""Real-data loaders (COCO, OpenCLIP CSV, webdataset shards) on tiny fixtures built in tmp_path."""
import gzip
import io
import json
import os
import pickle
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from clipmem_lib.data import FileImages
from clipmem_lib.datasets import load_dataset
from clipmem_lib.loaders import TarMember, expand_braces, load_coco, load_csv, load_webdataset

RED, GREEN, BLUE, WHITE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (128, 128, 128)


def img_bytes(colour, fmt="PNG", size=(20, 12)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def write_img(path, colour, size=(20, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(img_bytes(colour, "JPEG" if path.suffix == ".jpg" else "PNG", size))
    return path


def assert_colour(data, i, colour, tol=0):
    x = data.images.load(i, 0, 16)
    assert x.dtype == torch.uint8 and x.shape == (3, 16, 16)
    want = torch.tensor(colour, dtype=torch.int16).view(3, 1, 1)
    assert (x.to(torch.int16) - want).abs().max() <= tol, f"pair {i}: {x[:, 8, 8].tolist()} != {colour}"


def write_tar(path, members):
    """``members``: (name, bytes) pairs, written in order to an uncompressed tar."""
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# ----------------------------------------------------------------------------------------------- COCO

# image id -> (file, colour, number of captions); listed out of id order on purpose
COCO_IMAGES = {7: ("c.png", BLUE, 6), 2: ("a.png", RED, 5), 5: ("b.png", GREEN, 5), 9: ("d.png", WHITE, 5),
               4: ("nocap.png", GREY, 0)}


def coco_json(images=COCO_IMAGES):
    js = {"images": [{"id": i, "file_name": f} for i, (f, _, _) in images.items()], "annotations": []}
    for k in range(6):  # interleave images so that annotation order != grouping order
        for i, (_, _, n) in images.items():
            if k < n:
                js["annotations"].append({"id": len(js["annotations"]), "image_id": i, "caption": f" {i} cap{k} "})
    return js


@pytest.fixture
def coco(tmp_path):
    root = tmp_path / "coco"
    for f, colour, _ in COCO_IMAGES.values():
        write_img(root / "train2017" / f, colour)
    ann = root / "annotations" / "captions_train2017.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps(coco_json()))
    return root, ann, root / "train2017"


def test_coco_pairs_captions_pixels_meta(coco):
    _, ann, folder = coco
    d = load_coco(ann, folder)
    ids = [2, 5, 7, 9]  # by image id; image 4 has no caption
    assert len(d) == 4 and d.meta.image_id.tolist() == ids
    assert d.meta.file_name.tolist() == [COCO_IMAGES[i][0] for i in ids]
    assert not d.meta.is_miscaptioned.any()
    for p, i in enumerate(ids):
        assert d.captions[p] == [f"{i} cap{k}" for k in range(5)]  # stripped, first 5, annotation order
        assert_colour(d, p, COCO_IMAGES[i][1])
    assert d.n_captions == 5
    assert load_coco(ann, folder, max_captions=2).captions[2] == ["7 cap0", "7 cap1"]


def test_coco_fingerprint(coco):
    _, ann, folder = coco
    fp = load_coco(ann, folder).images.fingerprint()
    assert load_coco(ann, folder).images.fingerprint() == fp
    write_img(folder / "b.png", GREEN, size=(40, 30))
    assert load_coco(ann, folder).images.fingerprint() != fp


def test_coco_errors(coco, tmp_path):
    _, ann, folder = coco
    with pytest.raises(FileNotFoundError, match="annotation file not found.*nope.json"):
        load_coco(tmp_path / "nope.json", folder)
    with pytest.raises(FileNotFoundError, match="image folder not found.*nofolder"):
        load_coco(ann, tmp_path / "nofolder")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="no 'annotations' key"):
        load_coco(bad, folder)
    js = coco_json()
    js["annotations"].append({"id": 99, "image_id": 12345, "caption": "orphan"})
    bad.write_text(json.dumps(js))
    with pytest.raises(ValueError, match="annotation 99 refers to image_id 12345"):
        load_coco(bad, folder)
    os.remove(folder / "c.png")
    with pytest.raises(FileNotFoundError, match=r"1 of 4 image files not found.*c\.png"):
        load_coco(ann, folder)


def test_corrupt_image_fails_lazily_naming_it(coco):
    _, ann, folder = coco
    (folder / "a.png").write_bytes(b"this is not an image" * 10)
    d = load_coco(ann, folder)  # only stat()ed at load time
    assert_colour(d, 1, GREEN)
    with pytest.raises(ValueError, match=r"corrupt or not an image.*a\.png"):
        d.images.load(0, 0, 16)


def test_corrupt_jpg_names_it(tmp_path):
    write_img(tmp_path / "ok.jpg", RED)
    (tmp_path / "junk.jpg").write_bytes(os.urandom(300))
    (tmp_path / "d.csv").write_text("filepath\ttitle\nok.jpg\tfine\njunk.jpg\tbroken\n")
    d = load_csv(tmp_path / "d.csv")
    assert_colour(d, 0, RED, tol=3)
    with pytest.raises(ValueError, match=r"junk\.jpg"):
        d.images.load(1, 0, 16)


# ------------------------------------------------------------------------------------------------ CSV

def test_csv_merges_duplicate_paths_in_row_order(tmp_path):
    for f, c in [("x.png", RED), ("sub/y.png", BLUE)]:
        write_img(tmp_path / f, c)
    rows = [("x.png", "red one"), ("sub/y.png", "blue one"), ("x.png", "red two"), ("x.png", "red three")]
    (tmp_path / "d.tsv").write_text("filepath\ttitle\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    d = load_csv(tmp_path / "d.tsv")
    assert d.captions == [["red one", "red two", "red three"], ["blue one"]]
    assert d.meta.filepath.tolist() == ["x.png", "sub/y.png"]
    assert_colour(d, 0, RED)
    assert_colour(d, 1, BLUE)


def test_csv_custom_keys_separator_and_root(tmp_path):
    write_img(tmp_path / "imgs" / "g.png", GREEN)
    csv = tmp_path / "meta" / "d.csv"
    csv.parent.mkdir()
    csv.write_text("url,text,extra\ng.png,\"green, square\",1\n")
    with pytest.raises(FileNotFoundError, match=r"g\.png"):  # relative to the CSV's folder by default
        load_csv(csv, sep=",", img_key="url", caption_key="text")
    d = load_csv(csv, sep=",", img_key="url", caption_key="text", root=tmp_path / "imgs")
    assert d.captions == [["green, square"]]
    assert_colour(d, 0, GREEN)


def test_csv_errors(tmp_path):
    write_img(tmp_path / "x.png", RED)
    csv = tmp_path / "d.csv"
    csv.write_text("filepath\ttitle\nx.png\tred\n")
    with pytest.raises(ValueError, match=r"one column was parsed.*separator.*sep=','"):
        load_csv(csv, sep=",")
    csv.write_text("filepath\ttitle\nx.png\tred\nx.png\tred, again\n")  # a comma in a later row only
    with pytest.raises(ValueError, match=r"cannot parse .*d\.csv with sep=','; is the separator right"):
        load_csv(csv, sep=",")
    with pytest.raises(ValueError, match=r"column 'caption' not in .*columns found: \['filepath', 'title'\]"):
        load_csv(csv, caption_key="caption")
    csv.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_csv(csv)
    csv.write_text("filepath\ttitle\n")
    with pytest.raises(ValueError, match="header but no rows"):
        load_csv(csv)
    with pytest.raises(FileNotFoundError, match="CSV file not found"):
        load_csv(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------------------- webdataset

WDS = {"shard-000.tar": [("s0", "jpg", RED), ("s1", "png", GREEN)],
       "shard-001.tar": [("s2", "png", BLUE), ("s3", "jpg", WHITE)]}


@pytest.fixture
def shards(tmp_path):
    for shard, samples in WDS.items():
        members = []
        for k, ext, c in samples:  # s1 has its caption before its image
            pair = [(f"{k}.{ext}", img_bytes(c, ext.upper().replace("JPG", "JPEG"))),
                    (f"{k}.txt", f"{k} caption\n".encode())]
            members += pair[::-1] if k == "s1" else pair
        write_tar(tmp_path / shard, members)
    return tmp_path


@pytest.mark.parametrize("pattern", ["shard-{000..001}.tar", "shard-*.tar"])
def test_webdataset_loads_all_samples_in_order(shards, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = load_webdataset(str(shards / pattern))
    samples = [s for ss in WDS.values() for s in ss]
    assert d.captions == [[f"{k} caption"] for k, _, _ in samples]
    assert d.meta.key.tolist() == [k for k, _, _ in samples]
    assert [os.path.basename(s) for s in d.meta.shard] == ["shard-000.tar"] * 2 + ["shard-001.tar"] * 2
    for i, (_, ext, c) in enumerate(samples):
        assert_colour(d, i, c, tol=3 if ext == "jpg" else 0)
    assert load_webdataset(str(shards / pattern)).images.fingerprint() == d.images.fingerprint()


def test_webdataset_skips_sample_without_caption(tmp_path):
    write_tar(tmp_path / "a.tar", [("k0.png", img_bytes(RED)), ("k1.png", img_bytes(BLUE)), ("k1.txt", b"blue")])
    with pytest.warns(UserWarning, match=r"1 without a caption.*a\.tar:k0"):
        d = load_webdataset([tmp_path / "a.tar"])
    assert d.captions == [["blue"]] and d.meta.key.tolist() == ["k1"]
    assert_colour(d, 0, BLUE)


def test_webdataset_errors(shards):
    with pytest.raises(FileNotFoundError, match=r"1 of 3 shards not found.*shard-002\.tar"):
        load_webdataset(str(shards / "shard-{000..002}.tar"))
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        load_webdataset(str(shards / "other-*.tar"))
    gz = shards / "shard-000.tar.gz"
    gz.write_bytes(gzip.compress((shards / "shard-000.tar").read_bytes()))
    with pytest.raises(ValueError, match=r"shard-000\.tar\.gz is not a readable uncompressed tar"):
        load_webdataset([gz])


def test_tar_member_pickles(shards):
    d = load_webdataset(str(shards / "shard-*.tar"))
    ref = d.images.refs[1][0]
    assert isinstance(ref, TarMember) and ref.name == "shard-000.tar:s1.png"
    back = pickle.loads(pickle.dumps(ref))
    assert (back.tar, back.offset, back.size, back.name) == (ref.tar, ref.offset, ref.size, ref.name)
    assert back() == ref() == img_bytes(GREEN)
    assert torch.equal(pickle.loads(pickle.dumps(d.images)).load(2, 0, 16), d.images.load(2, 0, 16))


def test_expand_braces():
    assert expand_braces("a{00..02}.tar") == ["a00.tar", "a01.tar", "a02.tar"]
    assert expand_braces("{x,y}{1,2}") == ["x1", "x2", "y1", "y2"]
    assert expand_braces("d/{8..10}") == ["d/8", "d/9", "d/10"]
    assert expand_braces("plain.tar") == ["plain.tar"]


# -------------------------------------------------------------------------------------- load_dataset

def test_load_dataset_sources(coco, shards, tmp_path):
    root, _, _ = coco
    d = load_dataset("coco", str(root))
    assert d.meta.image_id.tolist() == [2, 5, 7, 9] and d.captions[0][0] == "2 cap0"
    write_img(tmp_path / "x.png", RED)
    (tmp_path / "d.tsv").write_text("filepath\ttitle\nx.png\tred\n")
    assert load_dataset("csv", str(tmp_path / "d.tsv")).captions == [["red"]]
    assert len(load_dataset("webdataset", str(shards / "shard-{000..001}.tar"))) == 4
    with pytest.raises(ValueError, match="needs data_path"):
        load_dataset("coco", "")
    with pytest.raises(ValueError, match="unknown data_source 'laion'.*builtin, coco, csv, webdataset"):
        load_dataset("laion", "x")


def test_coco_instances_give_first_level_labels(coco):
    from clipmem_lib.vision import first_level_targets

    root, ann, folder = coco
    inst = root / "annotations" / "instances_train2017.json"
    inst.write_text(json.dumps({
        "categories": [{"id": 1, "name": "dog", "supercategory": "animal"},
                       {"id": 2, "name": "cat", "supercategory": "animal"},
                       {"id": 3, "name": "car", "supercategory": "vehicle"}],
        "annotations": [{"image_id": 2, "category_id": 1}, {"image_id": 2, "category_id": 3},
                        {"image_id": 7, "category_id": 2}, {"image_id": 7, "category_id": 1}]}))
    d = load_dataset("coco", str(root))  # picks up the instances file
    assert d.meta.first_level.tolist() == ["animal|vehicle", "", "animal", ""]  # images 2, 5, 7, 9
    y, names = first_level_targets(d)
    assert names == ["animal", "vehicle"] and y.tolist() == [[1, 1], [0, 0], [1, 0], [0, 0]]
    with pytest.raises(FileNotFoundError, match="instances file not found"):
        load_coco(ann, folder, instances=root / "missing.json")
    with pytest.raises(ValueError, match="needs first-level labels"):
        first_level_targets(load_coco(ann, folder))


def test_coco_generated_images_are_variants_and_missing_ones_are_named(coco, tmp_path):
    """Table 1 at paper scale: generated images <stem>_<k><ext> in their own folder become variants 1..n."""
    root, ann, folder = coco
    gen = tmp_path / "generated"
    colours = {"a": RED, "b": GREEN, "c": BLUE, "d": WHITE}
    for stem, colour in colours.items():
        for k in (1, 2):
            write_img(gen / f"{stem}_{k}.png", tuple(255 - c for c in colour) if k == 1 else GREY)
    d = load_dataset("coco", str(root), n_variants=3, generated_path=str(gen))
    assert d.images.n_variants == 3
    assert d.images.load(0, 0, 8)[:, 4, 4].tolist() == list(RED)  # variant 0 is still COCO's own image
    assert d.images.load(0, 1, 8)[:, 4, 4].tolist() == [0, 255, 255] and d.images.load(3, 2, 8)[:, 4, 4].tolist() == list(GREY)
    assert d.images.fingerprint() != load_coco(ann, folder).images.fingerprint()
    (gen / "c_2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 12 image files not found, e\.g\. .*generated/c_2\.png"):
        load_dataset("coco", str(root), n_variants=3, generated_path=str(gen))
    with pytest.raises(FileNotFoundError, match="folder of generated images not found: /nope"):
        load_coco(ann, folder, generated="/nope", n_generated=2)


# ------------------------------------------------------------------------------- decoded-pixel cache

def count_opens(monkeypatch):
    calls = []
    real = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: (calls.append(a[0]), real(*a, **k))[1])
    return calls


def noisy_csv(tmp_path, n=3):
    """n PNGs of random pixels (so that pixel equality means something) in an OpenCLIP CSV."""
    g = torch.Generator().manual_seed(0)
    for k in range(n):
        px = torch.randint(0, 256, (24, 40, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(px).save(tmp_path / f"n{k}.png")
    (tmp_path / "d.csv").write_text("filepath\ttitle\n" + "".join(f"n{k}.png\tcap {k}\n" for k in range(n)))
    return tmp_path / "d.csv"


def test_cache_second_load_does_not_reopen_the_file(tmp_path, monkeypatch):
    d = load_csv(noisy_csv(tmp_path))
    fp = d.images.fingerprint()
    calls = count_opens(monkeypatch)
    first = d.images.batch([0, 1, 2], [0, 0, 0], 16)
    assert len(calls) == 3
    os.remove(tmp_path / "n1.png")  # the cached pixels are still there
    assert torch.equal(d.images.batch([2, 1, 0], [0, 0, 0], 16), first[[2, 1, 0]]) and len(calls) == 3
    assert d.images.fingerprint() == fp
    with pytest.raises(FileNotFoundError, match=r"pair 1 \(variant 0\) not found: .*n1\.png"):
        d.images.load(1, 0, 8)  # another size is another cache entry: the file is read, and is missing
    copy = pickle.loads(pickle.dumps(d.images))  # copies (DataLoader workers) start with an empty cache
    assert copy._cache == {} and copy.fingerprint() == fp and torch.equal(copy.load(0, 0, 16), first[0])


def test_cache_smaller_than_one_image_caches_nothing(tmp_path, monkeypatch):
    d = load_csv(noisy_csv(tmp_path))
    src = FileImages(d.images.refs, d.images.fingerprint(), cache_bytes=3 * 16 * 16 - 1)
    calls = count_opens(monkeypatch)
    for _ in range(3):
        src.load(0, 0, 16)
    assert len(calls) == 3 and src._cache == {}
    exact = FileImages(d.images.refs, d.images.fingerprint(), cache_bytes=2 * 3 * 16 * 16)  # two images fit
    exact.batch([0, 1, 2, 0, 1, 2], [0] * 6, 16)
    assert len(calls) == 3 + 4 and len(exact._cache) == 2  # beyond the budget it streams


def test_cached_and_uncached_pixels_are_identical(tmp_path):
    d = load_csv(noisy_csv(tmp_path))
    off = FileImages(d.images.refs, d.images.fingerprint(), cache_bytes=0)
    for size in (16, 8):
        a = d.images.batch([0, 1, 2], [0, 0, 0], size)
        assert torch.equal(d.images.batch([0, 1, 2], [0, 0, 0], size), a)  # from the cache
        assert torch.equal(off.batch([0, 1, 2], [0, 0, 0], size), a) and off._cache == {}


def test_corrupt_image_is_not_cached(tmp_path):
    csv = noisy_csv(tmp_path)
    (tmp_path / "n0.png").write_bytes(b"this is not an image" * 10)
    d = load_csv(csv)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"corrupt or not an image.*n0\.png"):
            d.images.load(0, 0, 16)


def test_load_photos_are_scikit_images_centre_crops_with_their_own_captions():
    import numpy as np
    from clipmem_lib.loaders import PHOTO_CAPTIONS, load_photos, photo_arrays

    pytest.importorskip("skimage.data", reason="scikit-image (requirements.txt) provides the real photos")
    photos = photo_arrays()
    data = load_photos(image_size=16)
    assert list(data.meta.name) == list(photos) and len(data) == len(photos) >= 12
    assert [c[0] for c in data.captions] == [PHOTO_CAPTIONS[n] for n in photos]
    i = list(photos).index("astronaut")  # 512 x 512: the square crop is the whole photo
    by_hand = np.array(Image.fromarray(photos["astronaut"]).resize((16, 16), Image.BICUBIC))
    assert torch.equal(data.images.pixels[i, 0], torch.from_numpy(by_hand).permute(2, 0, 1))
    wide = next(n for n, a in photos.items() if a.shape[1] > a.shape[0] * 1.2)  # a wide one keeps its middle
    a = photos[wide]
    h = a.shape[0]
    middle = a[:, (a.shape[1] - h) // 2:(a.shape[1] - h) // 2 + h]
    ref = np.asarray(Image.fromarray(middle).resize((16, 16), Image.BICUBIC)).astype(int)
    got = data.images.pixels[list(photos).index(wide), 0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - ref).mean() < 8  # up to ImageOps.fit's rounding of the crop box
    assert load_photos(16).images.fingerprint() == data.images.fingerprint() != load_photos(24).images.fingerprint()


# -------------------------------------------------------------------------------------- openclipart

def svg_text(title="", description="", keywords=()):
    """An SVG with openclipart's metadata layout (cc:Work with dc:title, dc:description, dc:subject/rdf:Bag)."""
    lis = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return ('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<metadata><rdf:RDF><cc:Work rdf:about=""><dc:title>{title}</dc:title><dc:description>{description}'
            f'</dc:description><dc:subject><rdf:Bag>{lis}</rdf:Bag></dc:subject><dc:creator><cc:Agent><dc:title>'
            'Some Artist</dc:title></cc:Agent></dc:creator></cc:Work></rdf:RDF></metadata><rect width="1" height="1"/></svg>')


def drawing_png(path, block=(5, 5, 25, 15), colour=RED, size=(40, 30)):
    """A transparent canvas with one opaque block (x0, y0, x1, y1): what openclipart's PNGs look like."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    im.paste(Image.new("RGBA", (block[2] - block[0], block[3] - block[1]), (*colour, 255)), block[:2])
    im.save(path)


# relative path -> (title, description, keywords, expected caption; None: the pair is dropped)
CLIPART = {
    "animals/cat_01.svg": ("Clipart by Nicu Buculei - cat_01", "A ginger cat. Drawn in 2004, see http://x.org",
                           ["", "animal", "pet_cat", "animal"], "cat; A ginger cat; animal, pet cat"),
    "animals/dog.svg": ("Dog", "dog", ["mammal"], "Dog; mammal"),  # a description that repeats the title goes
    "office/mail.svg": ("envelope", "me@example.org", [], "envelope"),  # an address is no description
    "shapes/star_1.svg": ("gramastar", "", ["stars", "shapes"], "stars, shapes"),  # a title two drawings share
    "shapes/star_2.svg": ("gramastar", "", ["stars", "geometry"], "stars, geometry"),
    "shapes/star_3.svg": ("gramastar", "", [""], None),  # nothing usable left
    "shapes/deep/arrow05_4.svg": ("Clipart by Nicu Buculei - arrow08_4", "", ["shape"], "arrow; shape"),
}


@pytest.fixture
def clipart(tmp_path):
    """An openclipart-like tree: svg/ and png/ mirrored, plus a symbolic link, an SVG without its PNG and
    one whose PNG claims more pixels than the loader decodes."""
    for rel, (title, desc, kws, _) in CLIPART.items():
        (tmp_path / "svg" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "svg" / rel).write_text(svg_text(title, desc, kws))
        drawing_png(tmp_path / "png" / rel.replace(".svg", ".png"))
    (tmp_path / "svg" / "office" / "cat_link.svg").symlink_to("../animals/cat_01.svg")
    (tmp_path / "png" / "office" / "cat_link.png").symlink_to("../animals/cat_01.png")
    (tmp_path / "svg" / "office" / "no_png.svg").write_text(svg_text("lonely", "", ["alone"]))
    (tmp_path / "svg" / "office" / "huge.svg").write_text(svg_text("huge", "", ["big"]))
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (5000).to_bytes(4, "big") * 2  # 25 Mpx, never decoded
    (tmp_path / "png" / "office" / "huge.png").write_bytes(header + b"\x08\x06\x00\x00\x00" + os.urandom(50))
    return tmp_path


def test_openclipart_captions_follow_the_rule_on_a_synthetic_tree(clipart):
    from clipmem_lib.loaders import load_openclipart

    d = load_openclipart(root=clipart, image_size=8)
    kept = sorted(r for r, v in CLIPART.items() if v[3] is not None)  # no link, no PNG-less or huge drawing
    assert d.meta.path.tolist() == kept and d.meta.category.tolist() == [r.split("/")[0] for r in kept]
    assert [c for c, in d.captions] == [CLIPART[r][3] for r in kept]
    assert d.name.endswith(f"{len(kept)} pairs") and d.images.pixels.shape == (len(kept), 1, 3, 8, 8)
    sample = load_openclipart(3, root=clipart, image_size=8, seed=1)
    assert len(sample) == 3 and set(sample.meta.path) < set(kept) and sample.meta.path.is_monotonic_increasing
    assert sample.meta.path.tolist() == load_openclipart(3, root=clipart, image_size=8, seed=1).meta.path.tolist()
    assert sample.images.fingerprint() != d.images.fingerprint() != load_openclipart(root=clipart).images.fingerprint()


def test_openclipart_image_is_the_drawn_box_padded_to_a_square(clipart):
    from clipmem_lib.loaders import load_openclipart

    drawing_png(clipart / "png" / "animals" / "dog.png", block=(10, 4, 30, 14), colour=BLUE)  # 20 x 10, off centre
    d = load_openclipart(root=clipart, image_size=20)
    x = d.images.pixels[d.meta.path.tolist().index("animals/dog.svg"), 0].permute(1, 2, 0).numpy().astype(int)
    want = np.full((20, 20, 3), 255)
    want[5:15] = BLUE  # the 20 x 10 box, centred in a white 20 x 20 square: no resampling at this size
    assert np.array_equal(x, want)


def test_openclipart_errors(clipart, tmp_path):
    from clipmem_lib.loaders import load_openclipart

    with pytest.raises(FileNotFoundError, match=r"openclipart set needs .*nowhere/svg.*apt-get install openclipart-svg openclipart-png"):
        load_openclipart(root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"n=9: openclipart under .* has 6 captioned drawings"):
        load_openclipart(9, root=clipart)
    (clipart / "svg" / "animals" / "dog.svg").write_text("<svg><metadata>")
    with pytest.raises(ValueError, match=r"animals/dog\.svg is not a readable SVG"):
        load_openclipart(root=clipart)
    (clipart / "svg" / "animals" / "dog.svg").write_text(svg_text("Dog"))
    (clipart / "png" / "animals" / "dog.png").write_bytes(b"GIF89a" + bytes(30))
    with pytest.raises(ValueError, match=r"animals/dog\.png is not a PNG"):
        load_openclipart(root=clipart)


def by_hand_drawing(path, size):
    """A PNG composited on white, cropped, padded and resized, in numpy (independently of the loader)."""
    a = np.asarray(Image.open(path).convert("RGBA")).astype(float)
    rgb = np.round(a[..., :3] * a[..., 3:] / 255 + 255 * (1 - a[..., 3:] / 255))
    rows, cols = np.flatnonzero((rgb < 255).any((1, 2))), np.flatnonzero((rgb < 255).any((0, 2)))
    if len(rows):  # a drawing all in white is kept whole
        rgb = rgb[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = rgb.shape[:2]
    side = max(h, w)
    square = np.full((side, side, 3), 255.0)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = rgb
    return np.asarray(Image.fromarray(square.astype(np.uint8)).resize((size, size), Image.BICUBIC)).astype(int)


def real_openclipart():
    from clipmem_lib.loaders import openclipart_available

    if not openclipart_available():
        pytest.skip("Debian's openclipart-svg and openclipart-png are not installed (make installs them where it can)")


def test_openclipart_sample_pixels_match_the_png_by_hand():
    from clipmem_lib.loaders import OPENCLIPART, load_openclipart

    real_openclipart()
    d = load_openclipart(30, image_size=32, seed=0)
    assert len(d) == 30 and all(c[0] for c in d.captions)
    for i, rel in enumerate(d.meta.path):
        got = d.images.pixels[i, 0].permute(1, 2, 0).numpy().astype(int)
        want = by_hand_drawing(os.path.join(OPENCLIPART, "png", rel[:-4] + ".png"), 32)
        assert np.abs(got - want).max() <= 1, rel  # up to rounding in compositing


@pytest.mark.slow
def test_openclipart_whole_set_by_hand_pairs():
    from clipmem_lib.loaders import OPENCLIPART, load_openclipart

    real_openclipart()
    d = load_openclipart(image_size=16)
    assert len(d) == 7322 and len({c for c, in d.captions}) == 3014
    by_hand = {"people/bodypart/brain_jon_phillips_01.svg":  # title, description's sentence, keywords
               "Brain; This is a vectorization of a brain image; human, intelligence, thinking, smart, brain, anatomy",
               "shapes/arrows/arrow05_4.svg": "arrow; shape, arrow",  # "Clipart by Nicu Buculei - arrow08_4"
               "shapes/stars/star_49pt16step.svg": "stars, shapes, magick, geometry",  # title "gramastar": 1,375 share it
               "recreation/toys/rubik.svg": "piggybank; toy, recreation"}  # the artist's title, however wrong
    paths = d.meta.path.tolist()
    for rel, caption in by_hand.items():
        i = paths.index(rel)
        assert d.captions[i] == [caption]
        got = d.images.pixels[i, 0].permute(1, 2, 0).numpy().astype(int)
        assert np.abs(got - by_hand_drawing(os.path.join(OPENCLIPART, "png", rel[:-4] + ".png"), 16)).max() <= 1
    assert "shapes/tangram_erwan_02.svg" not in paths  # a symbolic link to tangram_erwan_01.svg
