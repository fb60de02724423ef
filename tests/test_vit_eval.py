"""ViT evaluation and heatmaps on tiny data sets in every source format, against hand computations."""

import json
import math

import numpy as np
import pytest
import torch

from attnlab.data import DataError
from attnlab.vit import evaluate as ve
from attnlab.vit import heatmaps as vh
from attnlab.vit.model import VisionTransformer

torch.set_num_threads(2)

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
CFG = dict(img_size=32, patch_size=8, dim=16, depth=2, heads=2, mlp_ratio=2.0, num_classes=10)


def write_checkpoint(path, classes, num_classes=10, seed=0, images=None):
    torch.manual_seed(seed)
    cfg = dict(CFG, num_classes=num_classes)
    model = VisionTransformer(**cfg).eval()
    if images is not None:  # a strong head centred on these images, so that predictions differ between them
        with torch.no_grad():
            model.head.weight.normal_(0, 1)
            model.head.bias.sub_(model((torch.from_numpy(images).float() / 255 - MEAN) / STD).mean(0))
    torch.save({"model_config": cfg, "state_dict": model.state_dict(), "classes": list(classes),
                "config": {"heatmaps": {"n_images": 3}}, "epoch": 1}, path)
    return model.eval()


def hand_eval(model, images: np.ndarray, labels: np.ndarray, k: int):
    x = (torch.from_numpy(images).float() / 255 - MEAN) / STD
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    conf = np.zeros((k, k), dtype=int)
    for t, p in zip(labels, pred):
        conf[t, p] += 1
    return (pred == labels).mean(), conf


SOURCES = ["official-tarball", "official-folder", "imagefolder-dir", "imagefolder-tar", "prepared"]


@pytest.mark.parametrize("kind", SOURCES)
def test_accuracy_equals_hand_computation_for_every_source(kind, tmp_path):
    from tinydata import make_cifar_tarball, make_imagefolder

    if kind.startswith("official") or kind == "prepared":
        src = tmp_path / ("cifar-10-python.tar.gz" if kind != "official-folder" else "cifar")
        truth = make_cifar_tarball(src, n_per_class_train=1, n_per_class_test=3, as_folder=kind == "official-folder")
        if kind == "prepared":
            from attnlab.data.cifar10 import prepare

            prepare(src, tmp_path / "prepared")
            src = tmp_path / "prepared"
    else:
        src = tmp_path / ("if.tar.gz" if kind.endswith("tar") else "if")
        truth = make_imagefolder(src, n_per_class_train=1, n_per_class_test=4, as_tar=kind.endswith("tar"))
    classes = truth["classes"]
    images, labels = truth["test"]
    model = write_checkpoint(tmp_path / "ckpt.pt", classes, num_classes=len(classes), images=images)
    acc, conf = hand_eval(model, images, labels, len(classes))

    out = tmp_path / "eval.json"
    assert ve.main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--data", str(src), "--out", str(out),
                    "--confusion", str(tmp_path / "confusion.png")]) == 0
    result = json.loads(out.read_text())
    assert result["test_accuracy"] == pytest.approx(acc)
    assert result["n_test"] == len(labels)
    assert result["source"] == str(src)
    assert result["classes"] == classes
    assert np.array_equal(np.array(result["confusion"]), conf)
    for i, c in enumerate(classes):
        assert result["per_class"][c] == pytest.approx(conf[i, i] / conf[i].sum())
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert (conf.sum(axis=0) > 0).sum() > 1  # the model predicts several classes: a non-trivial comparison


def test_class_mismatch_is_refused(tmp_path):
    from tinydata import make_imagefolder

    make_imagefolder(tmp_path / "if", n_per_class_test=1)
    write_checkpoint(tmp_path / "ckpt.pt", [f"c{i}" for i in range(3)], num_classes=3)
    with pytest.raises(DataError, match="trained on"):
        ve.evaluate(tmp_path / "ckpt.pt", tmp_path / "if")
    assert ve.main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(tmp_path / "if"),
                    "--out", str(tmp_path / "e.json")]) == 2
    assert not (tmp_path / "e.json").exists()


def test_rollout_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    B, L, H, T = 2, 2, 3, 5
    maps = torch.softmax(torch.randn(B, L, H, T, T, generator=g), dim=-1)
    got = vh.attention_rollout(maps)
    m = maps.double().numpy()
    for b in range(B):
        layers = []
        for l in range(L):
            a = sum(m[b, l, h] for h in range(H)) / H
            a = a + np.eye(T)
            a = a / a.sum(axis=1, keepdims=True)
            layers.append(a)
        ref = layers[1] @ layers[0]
        np.testing.assert_allclose(got[b].numpy(), ref, rtol=1e-5, atol=1e-6)
    # One layer: just the renormalised (mean head + identity).
    one = vh.attention_rollout(maps[:, :1])
    a = maps[:, 0].double().mean(1) + torch.eye(T, dtype=torch.float64)
    torch.testing.assert_close(one.double(), a / a.sum(-1, keepdim=True), rtol=1e-5, atol=1e-6)
    # Rows of a rollout are distributions.
    torch.testing.assert_close(got.sum(-1), torch.ones(B, T))


def test_cls_attention_is_mean_over_layers_and_heads():
    maps = torch.softmax(torch.randn(1, 3, 2, 5, 5), dim=-1)
    got = vh.cls_attention(maps)
    ref = sum(maps[0, l, h, 0, 1:] for l in range(3) for h in range(2)) / 6
    torch.testing.assert_close(got[0], ref / ref.sum())


def test_map_stats_on_known_maps():
    uniform = torch.full((1, 64), 1 / 64)
    s = vh.map_stats(uniform, 8, 8)
    assert s["center_mass"].item() == pytest.approx(16 / 64)  # central 4x4 of the 8x8 grid
    assert s["border_mass"].item() == pytest.approx(28 / 64)  # outer ring of 8x8
    assert s["entropy"].item() == pytest.approx(math.log(64))
    delta = torch.zeros(1, 64)
    delta[0, 3 * 8 + 4] = 1.0  # row 3, column 4: a central patch
    s = vh.map_stats(delta, 8, 8)
    assert s["center_mass"].item() == pytest.approx(1) and s["border_mass"].item() == 0
    assert s["entropy"].item() == pytest.approx(0, abs=1e-9)


def test_pick_images_one_per_class_first():
    labels = torch.tensor([2, 0, 0, 1, 2, 1])
    assert vh.pick_images(labels, 3, 3) == [1, 3, 0]
    assert vh.pick_images(labels, 5, 3) == [1, 3, 0, 2, 5]


def test_heatmaps_cli_writes_figures_and_stats(tmp_path):
    from tinydata import make_imagefolder

    truth = make_imagefolder(tmp_path / "if.tar.gz", n_per_class_test=2, as_tar=True)
    model = write_checkpoint(tmp_path / "ckpt.pt", truth["classes"])
    assert vh.main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--data", str(tmp_path / "if.tar.gz"),
                    "--out-dir", str(tmp_path / "out")]) == 0
    stats = json.loads((tmp_path / "out" / "heatmap_stats.json").read_text())
    assert [r["true"] for r in stats["images"]] == truth["classes"][:3]  # n_images 3 from the checkpoint
    images, labels = truth["test"]
    x = (torch.from_numpy(images[[r["index"] for r in stats["images"]]]).float() / 255 - MEAN) / STD
    with torch.no_grad():
        logits, maps = model(x, return_attention=True)
    assert [r["pred"] for r in stats["images"]] == [truth["classes"][i] for i in logits.argmax(1)]
    cls = maps[:, :, :, 0, 1:].mean(dim=(1, 2))
    cls = cls / cls.sum(-1, keepdim=True)
    center = cls.view(-1, 4, 4)[:, 1:3, 1:3].sum(dim=(1, 2))
    assert [r["center_mass"] for r in stats["images"]] == pytest.approx(center.tolist(), abs=1e-5)
    s = stats["summary"]
    assert s["uniform_center_mass"] == pytest.approx(4 / 16) and s["max_entropy"] == pytest.approx(math.log(16))
    assert 0 < s["mean_entropy"] <= s["max_entropy"] + 1e-9
    for name in ("heatmaps.png", "rollout.png"):
        assert (tmp_path / "out" / name).stat().st_size > 5000


def test_sign_flip_p_by_hand():
    # three differences +1, +2, +3: of the 8 sign flips only (+,+,+) and (-,-,-) reach |mean| 2
    assert vh.sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    # +1, -1: the observed mean is 0, which every flip reaches
    assert vh.sign_flip_p([1.0, -1.0]) == 1.0
    # ten equal positive differences: only the two uniform flips reach the observed mean, 2 / 1024
    assert vh.sign_flip_p([0.3] * 10) == pytest.approx(2 / 1024)
    # above max_exact: seeded random flips, close to the exact value
    assert vh.sign_flip_p([1.0, 2.0, 3.0], max_exact=2, draws=40000) == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ValueError):
        vh.sign_flip_p([])


def test_object_masks_pick_the_patches_unlike_the_border():
    # a 4x4 grid of 2x2 patches: grey everywhere, a red 2x4-patch block in the middle rows
    img = torch.full((1, 3, 8, 8), 128, dtype=torch.uint8)
    img[0, 0, 2:6, :] = 255
    img[0, 1:, 2:6, :] = 0
    mask = vh.object_masks(img, 2)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, :] = True  # 8 of 16 patches: the red rows (the border ring's mean is mostly grey)
    assert mask.shape == (1, 16) and torch.equal(mask[0].view(4, 4), expected)
    p = torch.full((1, 16), 1 / 16)
    assert vh.map_stats(p, 4, 4, mask)["object_mass"].item() == pytest.approx(0.5)


def test_untrained_baseline_is_the_seeded_architecture():
    cfg = dict(CFG)
    ckpt = {"model_config": cfg, "config": {"train": {"seed": 7}}}
    torch.manual_seed(7)
    ref = VisionTransformer(**cfg)
    state = torch.get_rng_state()
    got = vh.untrained_model(ckpt)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values()):
        assert torch.equal(a, b), k
    assert not got.training


def test_heatmap_stats_compare_with_untrained_and_uniform(tmp_path):
    from tinydata import make_imagefolder

    truth = make_imagefolder(tmp_path / "if.tar.gz", n_per_class_test=2, as_tar=True)
    write_checkpoint(tmp_path / "ckpt.pt", truth["classes"], seed=3)
    res = vh.heatmaps(tmp_path / "ckpt.pt", tmp_path / "if.tar.gz", tmp_path / "out", n_images=4, device="cpu")
    # the checkpoint records no training seed: its baseline is the seed-0 build of its architecture
    images, _ = truth["test"]
    x = (torch.from_numpy(images[[r["index"] for r in res["images"]]]).float() / 255 - MEAN) / STD
    base = vh.untrained_model({"model_config": dict(CFG), "config": {}})
    with torch.no_grad():
        cls0 = vh.cls_attention(base(x, return_attention=True)[1])
    centre = vh.region_masks(4, 4)[0]
    assert [r["untrained_center_mass"] for r in res["images"]] == pytest.approx(cls0[:, centre].sum(-1).tolist(),
                                                                                abs=1e-6)
    t = res["tests"]["attention"]["center_mass"]
    diffs = [r["center_mass"] - r["untrained_center_mass"] for r in res["images"]]
    assert t["p_vs_untrained"] == pytest.approx(vh.sign_flip_p(diffs))
    assert t["uniform"] == pytest.approx(4 / 16) and res["tests"]["attention"]["object_mass"]["uniform"] == 0.5
    assert t["trained"] == pytest.approx(res["summary"]["mean_center_mass"])
    assert 2 / 16 <= t["p_vs_uniform"] <= 1  # four images: never below 2 / 2^4
    for r in res["images"]:
        assert 0 <= r["peak"][0] < 4 and 0 <= r["peak"][1] < 4
    assert res["tests"]["peak_on_object"]["count"] == sum(r["peak_on_object"] for r in res["images"])


def test_binomial_p_by_hand():
    # 9 of 10: P(X >= 9) = 11 / 1024, doubled
    assert vh.binomial_p(9, 10) == pytest.approx(22 / 1024)
    assert vh.binomial_p(1, 10) == pytest.approx(22 / 1024)  # the other tail, the same
    assert vh.binomial_p(5, 10) == 1.0
    assert vh.peak_test([True, True, False]) == {"count": 2, "n": 3, "chance": 0.5, "p": 1.0}
