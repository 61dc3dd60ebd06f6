"""Consistency training's parts: mixed strong views, mixed captions, EMA warm-up, class-wise thresholds,
and both decoders."""

from __future__ import annotations

import random

import pytest
import torch

import stages.street.train.loop as train
from models.ema import ema_alpha
from models.losses import consistency_loss, passed_per_class, pseudo_labels
from models.street.config import ModelConfig
from models.street.mixing import class_thresholds, classmix_masks, cutmix_masks, mix, mix_text, partners
from models.street.segmentor import build_segmentor, decoder_levels
from pipeline.config import load_config

JITTER = "train.colour_jitter=0.5"  # a step is given a settled value (a training run settles auto from its set)


def test_classmix_pastes_half_of_each_images_classes():
    pseudo = torch.zeros(2, 8, 8, dtype=torch.long)
    pseudo[0, :, :2], pseudo[0, :, 2:4], pseudo[0, :, 4:6], pseudo[0, :, 6:] = 1, 2, 3, 4  # classes 1-4
    pseudo[1, :4], pseudo[1, 4:] = 5, 6
    pseudo[1, 6:] = 255  # ignored: no class
    for seed in range(8):
        masks = classmix_masks(pseudo, 19, torch.Generator().manual_seed(seed))
        for b, classes in ((0, {1, 2, 3, 4}), (1, {5, 6})):
            chosen = set(pseudo[b][masks[b]].tolist())
            assert len(chosen) == (len(classes) + 1) // 2 and chosen <= classes
            assert not (set(pseudo[b][~masks[b]].tolist()) & chosen)  # a class is pasted whole or not at all


def test_a_mixed_pixel_and_its_pseudo_label_come_from_the_same_image(monkeypatch):
    """Through the training code: the teacher's pseudo-labels and confidences follow the image pixels."""
    monkeypatch.setattr(train, "strong_augment", lambda x, *_: x)  # photometric only; the geometry is the test
    images = torch.stack([torch.full((3, 16, 16), v) for v in (0.1, 0.5, 0.9)])  # image k is its own colour
    labels = torch.stack([torch.randint(0, 19, (16, 16), generator=torch.Generator().manual_seed(k))
                          for k in range(3)])

    class Teacher(torch.nn.Module):  # confident of a known label per image, at a known confidence
        def forward(self, x, text, mask):
            k = torch.tensor([0, 1, 2])
            logits = torch.nn.functional.one_hot(labels, 19).permute(0, 3, 1, 2).float() * (5.0 + k[:, None, None, None])
            return type("Out", (), {"logits": logits})()

    text = torch.randn(3, 4, 8)
    batch = train.Batch(images, labels, (text, torch.ones(3, 4, dtype=torch.bool)), images,
                        (text, torch.ones(3, 4, dtype=torch.bool)))
    cfg = load_config(None, ["train.mix=classmix", "train.mix_from=unlabelled", JITTER])
    view = train.strong_view(batch, Teacher(), cfg, torch.autocast("cpu", enabled=False))
    source = torch.round((view.images[:, 0] - 0.1) / 0.4).long()  # which image each pixel came from
    assert set(source.unique().tolist()) == {0, 1, 2}
    perm = partners(3)
    assert all(set(source[b].unique().tolist()) <= {b, int(perm[b])} for b in range(3))
    expected_conf = torch.stack([Teacher()(None, None, None).logits.softmax(1).max(1).values[k] for k in range(3)])
    for b in range(3):
        assert torch.equal(view.pseudo[b], labels.gather(0, source[b][None])[0])
        assert torch.equal(view.confidence[b], expected_conf.gather(0, source[b][None])[0])


def test_cross_domain_mix_pastes_labelled_pixels_with_their_ground_truth(monkeypatch):
    """train.mix_from=labelled (DACS): a pasted pixel comes from a labelled image and carries its ground
    truth at confidence 1; ignored ground truth is never pasted; the rest keeps the teacher's label."""
    monkeypatch.setattr(train, "strong_augment", lambda x, *_: x)
    g = torch.Generator().manual_seed(0)
    labelled = torch.stack([torch.full((3, 16, 16), v) for v in (0.2, 0.4, 0.6, 0.8)])  # source, target
    labels = torch.randint(0, 19, (4, 16, 16), generator=g)
    labels[:, :4] = 255  # ignored rows
    unlabelled = torch.zeros(2, 3, 16, 16)
    teacher_labels = torch.randint(0, 19, (2, 16, 16), generator=g)

    class Teacher(torch.nn.Module):
        def forward(self, x, text, mask):
            logits = torch.nn.functional.one_hot(teacher_labels, 19).permute(0, 3, 1, 2).float() * 3.0
            return type("Out", (), {"logits": logits})()

    l_text, u_text = torch.randn(4, 3, 8), torch.randn(2, 5, 8)
    batch = train.Batch(labelled, labels, (l_text, torch.ones(4, 3, dtype=torch.bool)), unlabelled,
                        (u_text, torch.ones(2, 5, dtype=torch.bool)))
    cfg = load_config(None, ["train.mix=classmix", "train.mix_from=labelled", JITTER])
    torch.manual_seed(3)
    view = train.strong_view(batch, Teacher(), cfg, torch.autocast("cpu", enabled=False))
    teacher_conf = Teacher()(None, None, None).logits.softmax(1).max(1).values
    for b in range(2):
        pasted = view.images[b, 0] > 0
        assert pasted.any() and not pasted.all()
        k = round(float(view.images[b, 0][pasted][0]) / 0.2) - 1  # the labelled image it came from
        assert torch.all(view.images[b, 0][pasted] == labelled[k, 0, 0, 0])
        assert torch.equal(view.pseudo[b][pasted], labels[k][pasted]) and torch.all(view.confidence[b][pasted] == 1)
        assert not pasted[:4].any()  # ignored pixels stay the unlabelled image's
        assert torch.equal(view.pseudo[b][~pasted], teacher_labels[b][~pasted])
        assert torch.equal(view.confidence[b][~pasted], teacher_conf[b][~pasted])
        # half of the labelled image's classes, each pasted whole
        shown = set(labels[k][4:].unique().tolist())
        chosen = set(view.pseudo[b][pasted].unique().tolist())
        assert len(chosen) == (len(shown) + 1) // 2 and not (set(labels[k][4:][~pasted[4:]].tolist()) & chosen)
        assert torch.equal(view.text[b, :3], l_text[k]) and torch.equal(view.text[b, 3:8], u_text[b])
    assert view.mask.sum(1).tolist() == [8, 8]


def test_cutmix_is_one_box():
    masks = cutmix_masks((2, 20, 30), torch.device("cpu"), torch.Generator().manual_seed(1))
    for m in masks:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert m.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a full rectangle
        assert 0.4 < m.float().mean() < 0.6
    assert torch.equal(mix(masks, torch.ones(2, 20, 30), torch.zeros(2, 20, 30)), masks.float())


def test_the_mixed_caption_holds_both_captions_tokens_and_masks():
    text = torch.zeros(2, 5, 3)
    text[0, :3] = torch.tensor([[1.0] * 3, [2.0] * 3, [3.0] * 3])  # caption A: 3 tokens
    text[1, :2] = torch.tensor([[7.0] * 3, [8.0] * 3])  # caption B: 2 tokens
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    perm = partners(2)
    joined, joined_mask = mix_text(text, mask, text[perm], mask[perm], max_tokens=77)
    assert joined[0, :5, 0].tolist() == [1, 2, 3, 7, 8] and joined_mask[0].tolist() == [True] * 5 + [False] * 5
    assert joined[1, :5, 0].tolist() == [7, 8, 1, 2, 3] and joined_mask[1].sum() == 5
    assert torch.all(joined[0, 5:] == 0)
    cut, cut_mask = mix_text(text, mask, text[perm], mask[perm], max_tokens=4)
    assert cut[0, :, 0].tolist() == [1, 2, 3, 7] and cut_mask.all()
    # DLG sees both: F_M has a non-zero row for each of the five tokens of the mixed caption
    model = build_segmentor(ModelConfig(dlg_dim=8, decoder_channels=8), text_dim=3, num_classes=19).eval()
    fused = model(torch.randn(2, 3, 32, 32), joined, joined_mask).fused
    rows = fused.abs().flatten(2).sum(2)  # (B, max_tokens)
    assert (rows[:, :5] > 0).all() and (rows[:, 5:] == 0).all()


def test_ema_warm_up():
    assert [ema_alpha(t, 0.99) for t in range(3)] == [0.0, 0.5, pytest.approx(2 / 3)]
    assert ema_alpha(9, 0.99) == pytest.approx(0.9) and ema_alpha(10_000, 0.99) == 0.99
    assert ema_alpha(0, 0.99, warmup=False) == 0.99


def test_class_wise_thresholds():
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(2, 6, 6, generator=g)
    pseudo = torch.randint(0, 4, (2, 6, 6), generator=g)
    pseudo[pseudo == 3] = 0  # class 3 absent; 4..18 too
    th = class_thresholds(confidence, pseudo, 19, threshold=0.95, quantile=0.5)
    for c in range(3):
        values = confidence[pseudo == c]
        assert th[c] == min(0.95, torch.quantile(values, 0.5, interpolation="lower"))
    assert torch.all(th[3:] == 0.95)
    confident = torch.full((1, 4, 4), 0.99)
    assert torch.all(class_thresholds(confident, torch.zeros(1, 4, 4, dtype=torch.long), 19, 0.95, 0.5) == 0.95)
    # uncapped: an over-confident class still passes only its top share
    sure = 0.96 + 0.03 * torch.rand(1, 10, 10, generator=g)
    uncapped = class_thresholds(sure, torch.zeros(1, 10, 10, dtype=torch.long), 19, 0.95, 0.9, cap=False)
    assert uncapped[0] == torch.quantile(sure, 0.9, interpolation="lower") and torch.all(uncapped[1:] == 0.95)
    assert (sure >= uncapped[0]).float().mean() == pytest.approx(0.11)  # ranks 89..99 of 100: the top tenth
    # per class: a rare, unsure class still passes half its pixels, where a fixed Th lets none through
    _, fixed = consistency_loss(torch.zeros(2, 19, 6, 6), pseudo, confidence, 0.95)
    _, classwise = consistency_loss(torch.zeros(2, 19, 6, 6), pseudo, confidence, th)
    share = passed_per_class(pseudo, classwise, 19)
    assert fixed.sum() < classwise.sum() and torch.all(share[:3] >= 0.5)


@pytest.mark.parametrize("decoder", ["light", "multilevel"])
@pytest.mark.parametrize("size", [(512, 512), (96, 160)])
def test_both_decoders_give_logits_at_the_input_size(decoder, size):
    model = build_segmentor(ModelConfig(decoder=decoder, dlg_dim=8, decoder_channels=8), text_dim=64, num_classes=19)
    out = model(torch.randn(1, 3, *size), torch.randn(1, 5, 64), torch.ones(1, 5, dtype=torch.bool))
    assert out.logits.shape == (1, 19, *size) and torch.isfinite(out.logits).all()
    assert model.levels == (() if decoder == "light" else (1, 2, 3))


def test_multilevel_reads_blocks_3_6_9_of_vit_b():
    assert decoder_levels(12) == (3, 6, 9) and decoder_levels(4) == (1, 2, 3)


def test_colour_jitter_strength():
    """train.colour_jitter: 0 keeps every colour (blur alone changes nothing in a flat image); 0.5 changes them."""
    flat = torch.rand(8, 3, 1, 1).expand(8, 3, 12, 12).contiguous()
    random.seed(0)
    assert torch.allclose(train.strong_augment(flat, 0.0), flat, atol=1e-5)
    assert (train.strong_augment(flat, 0.5) - flat).abs().amax((1, 2, 3)).min() > 1e-3


def test_strong_blur_probability(monkeypatch):
    """train.strong_blur: 0 never blurs (no jitter: the images come back as they were), 1 blurs every image;
    the strong view uses the configured value."""
    images = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    random.seed(0)
    assert torch.allclose(train.strong_augment(images, 0.0, 0.0), images, atol=1e-5)
    blurred = train.strong_augment(images, 0.0, 1.0)
    assert (blurred - images).abs().amax((1, 2, 3)).min() > 1e-3
    seen = []
    monkeypatch.setattr(train, "strong_augment", lambda x, s, blur: seen.append(blur) or x)

    class Teacher(torch.nn.Module):
        def forward(self, x, text, mask):
            return type("Out", (), {"logits": torch.zeros(x.shape[0], 19, *x.shape[2:])})()

    text = (torch.randn(6, 4, 8), torch.ones(6, 4, dtype=torch.bool))
    batch = train.Batch(images, torch.zeros(6, 12, 12, dtype=torch.long), text, images, text)
    cfg = load_config(None, ["train.mix=none", "train.strong_blur=0.25", JITTER])
    train.strong_view(batch, Teacher(), cfg, torch.autocast("cpu", enabled=False))
    assert seen == [0.25]


@pytest.mark.parametrize(("labelled", "jitter"), [(0, 0.5), (1, 0.2), (20, 0.2), ("all", 0.2)])
def test_colour_jitter_auto_follows_the_labelled_target_images(labelled, jitter):
    """train.colour_jitter auto: UniMatch's 0.5 with no labelled target image (UDA), 0.2 with some, settled as the
    config loads; the worker's config and setup.json carry that value; a number is kept as given."""
    data = train.TrainingSet([{}], [{}] * (labelled if labelled != "all" else 3), [{}] * 4)
    cfg = load_config(None, [f"data.labelled_target={labelled}", "train.colour_jitter=auto"])
    assert cfg.train.colour_jitter == jitter
    assert train.describe(cfg, data)["colour_jitter"] == jitter
    assert load_config(None, ["train.colour_jitter=0.35"]).train.colour_jitter == 0.35


def test_auto_counts_the_lines_of_a_split_file(tmp_path):
    empty, one = tmp_path / "empty.txt", tmp_path / "one.txt"
    empty.write_text("# nothing labelled\n")
    one.write_text("aachen_000000_000019\n")
    assert load_config(None, [f"data.split_file={empty}"]).train.colour_jitter == 0.5
    assert load_config(None, [f"data.split_file={one}", "data.labelled_target=0"]).train.colour_jitter == 0.2


@pytest.mark.parametrize(("labelled", "where"), [(0, "sup"), (1, "ct"), (20, "ct")])
def test_pasted_ground_truth_auto_follows_the_labelled_target_images(labelled, where):
    """loss.pasted_gt auto: L_sup with no labelled target image (UDA), the class-balanced L_CT with some, settled as
    the config loads; the worker's config and setup.json carry the place that ran; a step refuses an auto that
    bypassed the loading."""
    data = train.TrainingSet([{}], [{}] * labelled, [{}] * 4)
    cfg = load_config(None, [f"data.labelled_target={labelled}", "loss.pasted_gt=auto"])
    assert cfg.loss.pasted_gt == where
    assert train.describe(cfg, data)["pasted_gt"] == where
    assert load_config(None, ["loss.pasted_gt=sup", "data.labelled_target=0"]).loss.pasted_gt == "sup"
    unsettled = cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"pasted_gt": "auto"})})
    with pytest.raises(ValueError, match="loss.pasted_gt"):
        train.in_sup(unsettled)


@pytest.mark.parametrize("decoder", ["light", "multilevel"])
def test_feature_perturbation_drops_channels_of_the_last_images_only(decoder):
    model = build_segmentor(ModelConfig(decoder=decoder, dlg_dim=8, decoder_channels=8), text_dim=16,
                            num_classes=19).eval()
    args = torch.randn(4, 3, 32, 32), torch.randn(4, 5, 16), torch.ones(4, 5, dtype=torch.bool)
    torch.manual_seed(0)
    clean, perturbed = model(*args).logits, model(*args, perturb=(2, 0.5)).logits
    assert torch.allclose(clean[:2], perturbed[:2])
    assert all(not torch.allclose(clean[b], perturbed[b]) for b in (2, 3))


class Recorder(torch.nn.Module):
    """The student, remembering what it was given and what it returned."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, images, text, mask, perturb=(0, 0.0)):
        out = self.model(images, text, mask, perturb=perturb)
        self.calls.append((images, perturb, out.logits))
        return out


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_feature_perturbation_teaches_the_weak_views_in_the_same_pass(p):
    """train.feature_perturbation (UniMatch): the unmixed weak views join the student's one pass with their
    features dropped out, taught the teacher's labels; L_CT is the mean of both views' losses."""
    from models.street.preprocess import normalize

    torch.manual_seed(0)
    model = build_segmentor(ModelConfig(dlg_dim=8, decoder_channels=8), text_dim=16, num_classes=19)
    student, teacher = Recorder(model), build_segmentor(ModelConfig(dlg_dim=8, decoder_channels=8), 16, 19).eval()
    text = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    batch = train.Batch(torch.rand(2, 3, 32, 32), torch.randint(0, 19, (2, 32, 32)), text, torch.rand(2, 3, 32, 32), text)
    cfg = load_config(None, [f"train.feature_perturbation={p}", "loss.class_threshold_quantile=0.5", JITTER, "loss.pasted_gt=ct"])
    _, logs = train.train_step(batch, student, teacher, torch.nn.CrossEntropyLoss(ignore_index=255), cfg, amp=False)
    ((images, perturb, logits),) = student.calls
    if not p:
        assert images.shape[0] == 4 and perturb == (0, 0.0) and "loss_fp" not in logs
        return
    assert images.shape[0] == 6 and perturb == (2, 0.5)
    assert torch.equal(images[4:], normalize(batch.unlabelled))  # the weak views, not the mixed ones
    with torch.no_grad():
        pseudo, confidence = pseudo_labels(teacher(normalize(batch.unlabelled), *text).logits)
    th = class_thresholds(confidence, pseudo, 19, 0.95, 0.5, cap=False)
    expected, _ = consistency_loss(logits[4:].detach(), pseudo, confidence, th,  # against the unmixed labels
                                   omega=cfg.loss.consistency_omega)
    assert logs["loss_fp"] == pytest.approx(float(expected), rel=1e-5) and expected > 0
    assert logs["loss_ct"] != pytest.approx(float(expected))  # the strong view's loss counts too


def two_domain_batch(n_unlabelled: int = 4):
    """Labelled images of colour 0.2/0.4/0.6/0.8 with ground truth; unlabelled ones black, which the teacher
    labels class 1 everywhere; captions (B, n, 8)."""
    g = torch.Generator().manual_seed(0)
    labelled = torch.stack([torch.full((3, 16, 16), v) for v in (0.2, 0.4, 0.6, 0.8)])
    labels = torch.randint(2, 19, (4, 16, 16), generator=g)
    text = (torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool))
    u_text = (torch.randn(n_unlabelled, 5, 8), torch.ones(n_unlabelled, 5, dtype=torch.bool))
    return train.Batch(labelled, labels, text, torch.zeros(n_unlabelled, 3, 16, 16), u_text)


class ClassOne(torch.nn.Module):
    def forward(self, x, text, mask):
        logits = torch.zeros(x.shape[0], 19, *x.shape[2:])
        logits[:, 1] = 6.0
        return type("Out", (), {"logits": logits})()


@pytest.mark.parametrize("ratio, n", [(0.5, 4), (0.25, 4), (1.0, 4), (0.0, 4), (0.5, 2)])
def test_both_mixes_occur_at_the_configured_ratio(monkeypatch, ratio, n):
    """train.mix_from=both (IIDM): round(ratio·B) strong views paste a labelled image with its ground truth,
    the rest an unlabelled partner with the teacher's labels; the mixed captions follow each view's partner."""
    monkeypatch.setattr(train, "strong_augment", lambda x, *_: x)
    batch = two_domain_batch(n)
    cfg = load_config(None, ["train.mix_from=both", f"train.cross_domain_ratio={ratio}", JITTER])
    for seed in range(3):
        torch.manual_seed(seed)
        view = train.strong_view(batch, ClassOne(), cfg, torch.autocast("cpu", enabled=False))
        cross = view.images.flatten(1).amax(1) > 0  # a labelled image's pixels are in it
        assert int(cross.sum()) == round(ratio * n)
        assert torch.equal(view.from_gt.flatten(1).any(1), cross)
        for b in range(n):
            pasted = view.from_gt[b]
            assert torch.all(view.confidence[b][pasted] == 1) and torch.all(view.pseudo[b][~pasted] == 1)
            first = view.text[b, 0]
            if cross[b]:  # the labelled image's caption, then this image's
                assert any(torch.equal(first, batch.labelled_text[0][k, 0]) for k in range(4))
                assert torch.equal(view.text[b, 3:8], batch.unlabelled_text[0][b])
            else:  # the next unlabelled image's caption, then this one's
                assert torch.equal(view.text[b, :5], batch.unlabelled_text[0][(b + 1) % n])


def test_cross_domain_views_are_drawn_from_the_ratio():
    for n, ratio in ((4, 0.5), (8, 0.25), (3, 0.5)):
        counts = {int(train.cross_domain_views(n, "both", ratio).sum()) for _ in range(5)}
        assert counts == {round(ratio * n)}
    assert train.cross_domain_views(3, "labelled", 0.1).all() and not train.cross_domain_views(3, "unlabelled", 1).any()
    assert train.cross_domain_views(1, "both", 0.0).all()  # a batch of one has no unlabelled partner


@pytest.mark.parametrize("where", ["sup", "ct"])
def test_pasted_ground_truth_is_weighted_as_configured(monkeypatch, where):
    """loss.pasted_gt: ct (what auto picks with labelled target images) keeps pasted ground-truth pixels in L_CT
    at confidence 1, weighed with the pseudo-labelled pixels by DyCE's class weights (loss.consistency_omega 0.5),
    not as a plain CE; sup (what auto picks with none) counts them in L_sup, mined and class-weighted by DyCE with
    the labelled pixels, and takes them out of L_CT."""
    from models.losses import DyCELoss

    monkeypatch.setattr(train, "strong_augment", lambda x, *_: x)
    torch.manual_seed(0)
    batch = two_domain_batch(2)
    cfg = load_config(None, ["train.mix_from=labelled", f"loss.pasted_gt={where}", "train.feature_perturbation=0", JITTER,
                             "loss.class_thresholds=false", "loss.confidence_threshold=0.5"])
    student = Recorder(build_segmentor(ModelConfig(dlg_dim=8, decoder_channels=8), text_dim=8, num_classes=19))
    dyce = DyCELoss(0.2, 0.5)
    torch.manual_seed(1)
    _, logs = train.train_step(batch, student, ClassOne(), dyce, cfg, amp=False)
    ((_, _, logits),) = student.calls
    torch.manual_seed(1)
    view = train.strong_view(batch, ClassOne(), cfg, torch.autocast("cpu", enabled=False))
    assert view.from_gt.any() and logs["ct_pasted_gt"] == pytest.approx(float(view.from_gt.float().mean()))
    pasted = view.pseudo.masked_fill(~view.from_gt, 255)
    if where == "sup":
        expected_sup = dyce(logits[:6].detach(), torch.cat([batch.labels, pasted]))
        expected_ct, _ = consistency_loss(logits[4:].detach(), view.pseudo, view.confidence.masked_fill(view.from_gt, -1),
                                          0.5, omega=cfg.loss.consistency_omega)
        assert logs["ct_pseudo"] == pytest.approx(float(logs["ct_passed"]))  # only pseudo-labels pass L_CT
    else:
        expected_sup = dyce(logits[:4].detach(), batch.labels)
        expected_ct, _ = consistency_loss(logits[4:].detach(), view.pseudo, view.confidence, 0.5,
                                          omega=cfg.loss.consistency_omega)
        assert float(logs["ct_passed"]) > float(logs["ct_pseudo"])  # pasted pixels pass too, at confidence 1
        plain, _ = consistency_loss(logits[4:].detach(), view.pseudo, view.confidence, 0.5, omega=1.0)
        assert cfg.loss.consistency_omega < 1 and float(logs["loss_ct"]) != pytest.approx(float(plain), rel=1e-3)
    assert float(logs["loss_sup"]) == pytest.approx(float(expected_sup), rel=1e-5)
    assert float(logs["loss_ct"]) == pytest.approx(float(expected_ct), rel=1e-5)
