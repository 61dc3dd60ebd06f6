from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import CrossEntropyLoss, DyCELoss, consistency_loss, pseudo_labels


def dyce_by_hand(logits, target, hard_ratio, omega, ignore=255):
    """Eq. 9 written out pixel by pixel and class by class."""
    b, c, h, w = logits.shape
    pixels = []
    for n in range(b):
        for y in range(h):
            for x in range(w):
                label = int(target[n, y, x])
                if label == ignore:
                    continue
                log_p = logits[n, :, y, x].double().log_softmax(0)
                pixels.append((-float(log_p[label]), label))  # ℓ_i
    k = math.ceil(hard_ratio * len(pixels))
    hard = sorted(pixels, key=lambda p: -p[0])[:k]  # H
    f_h = len(hard)
    total = 0.0
    for cls in range(c):
        members = [l for l, lab in hard if lab == cls]
        if members:
            total += sum(members) / len(members) ** (1 - omega)  # 1 / f_c^(1-ω) Σ ℓ_i
    return total / f_h**omega


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# kthvalue is the CPU default, topk the CUDA one; both are checked on every device there is
SELECTIONS = [(d, s) for d in DEVICES for s in ("kthvalue", "topk")]


@pytest.mark.parametrize("device,select", SELECTIONS)
@pytest.mark.parametrize("hard_ratio,omega", [(0.2, 0.5), (0.5, 0.0), (1.0, 0.3), (0.37, 1.0)])
def test_dyce_matches_equation_9(hard_ratio, omega, device, select):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=g) * 3
    target = torch.randint(0, 5, (2, 6, 7), generator=g)
    target[0, :2] = 255
    got = DyCELoss(hard_ratio, omega, select=select)(logits.to(device), target.to(device))
    assert got.item() == pytest.approx(dyce_by_hand(logits, target, hard_ratio, omega), rel=1e-5)


@pytest.mark.parametrize("device,select", SELECTIONS)
def test_ties_keep_exactly_the_mined_count(device, select):
    """Constant logits give every pixel the same CE: H must still hold ⌈h·N⌉ pixels (the first ones)."""
    logits = torch.zeros(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5), generator=torch.Generator().manual_seed(5))
    target[0, 0] = 255
    for omega in (0.0, 0.5, 1.0):
        got = DyCELoss(0.3, omega, select=select)(logits.to(device), target.to(device)).item()
        assert got == pytest.approx(dyce_by_hand(logits, target, 0.3, omega), rel=1e-6)


@pytest.mark.parametrize("select", ["kthvalue", "topk"])
def test_both_selections_mine_the_same_pixels(select):
    g = torch.Generator().manual_seed(7)
    ce = torch.randint(0, 4, (500,), generator=g).float()  # many ties
    valid = torch.rand(500, generator=g) > 0.2
    k = torch.tensor(37)
    hard = DyCELoss(0.2, select=select)._hardest(ce, valid, k)
    assert int(hard.sum()) == 37 and not (hard & ~valid).any()
    order = sorted(range(500), key=lambda i: (-ce[i].item(), i))  # largest first, earliest first among ties
    expected = [i for i in order if valid[i]][:37]
    assert sorted(torch.nonzero(hard).flatten().tolist()) == sorted(expected)


def test_omega_one_is_mean_ce_over_mined_pixels():
    g = torch.Generator().manual_seed(1)
    logits, target = torch.randn(2, 4, 8, 8, generator=g), torch.randint(0, 4, (2, 8, 8), generator=g)
    ce = F.cross_entropy(logits, target, reduction="none").flatten()
    k = math.ceil(0.25 * ce.numel())
    expected = ce.topk(k).values.mean()
    assert DyCELoss(0.25, 1.0)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_weights_inside_dyce():
    """Another method's class weights kept in Eq. 9: constant weights change nothing; otherwise each class's
    term f_c^(ω-1) Σ ℓ is multiplied by w_c / (the mean w of the classes in H), by hand; a class absent from
    H does not count in that mean."""
    g = torch.Generator().manual_seed(3)
    logits, target = torch.randn(2, 5, 8, 8, generator=g) * 2, torch.randint(0, 4, (2, 8, 8), generator=g)
    plain = DyCELoss(0.3, 0.5)(logits, target).item()
    assert DyCELoss(0.3, 0.5)(logits, target, torch.full((5,), 7.0)).item() == pytest.approx(plain, rel=1e-6)
    w = torch.tensor([0.5, 2.0, 1.0, 4.0, 100.0])  # class 4 never occurs
    ce = F.cross_entropy(logits, target, reduction="none").flatten()
    hard = ce.topk(math.ceil(0.3 * ce.numel())).indices
    classes = target.flatten()[hard]
    f = torch.bincount(classes, minlength=5).float()
    w_bar = w[f > 0].mean()
    expected = sum(w[c] / w_bar * f[c] ** (0.5 - 1) * ce[hard][classes == c].sum() for c in range(4) if f[c] > 0)
    expected = expected / len(hard) ** 0.5
    assert DyCELoss(0.3, 0.5)(logits, target, w).item() == pytest.approx(expected.item(), rel=1e-5)
    assert DyCELoss(0.3, 0.5)(logits, target, w).item() != pytest.approx(plain, rel=1e-3)


def test_full_ratio_and_omega_one_is_plain_ce():
    g = torch.Generator().manual_seed(2)
    logits, target = torch.randn(3, 6, 5, 5, generator=g), torch.randint(0, 6, (3, 5, 5), generator=g)
    target[1, 0] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert DyCELoss(1.0, 1.0)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ignored_pixels_never_contribute():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 4, 6, 6, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (1, 6, 6), generator=g)
    target[0, :3] = 255
    loss = DyCELoss(0.5, 0.5)(logits, target)
    loss.backward()
    assert torch.all(logits.grad[0, :, :3] == 0)
    changed = logits.detach().clone()
    changed[0, :, :3] = 1e4  # huge logits at ignored pixels change nothing
    assert DyCELoss(0.5, 0.5)(changed, target).item() == pytest.approx(loss.item())
    empty = torch.full((1, 6, 6), 255)
    for select in ("kthvalue", "topk"):
        z = torch.randn(1, 4, 6, 6, requires_grad=True)
        out = DyCELoss(select=select)(z, empty)
        out.backward()
        assert out.item() == 0 and torch.all(z.grad == 0)


def test_finite_under_bf16_autocast_with_extreme_logits():
    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(2, 19, 16, 16, generator=g) * 1e4).requires_grad_()
    target = torch.randint(0, 19, (2, 16, 16), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DyCELoss()(logits.to(torch.bfloat16), target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_rare_class_gets_a_larger_gradient_than_plain_ce():
    """Eq. 10: weight 1/(f_H^ω f_c^(1-ω)) ≥ 1/S, largest for rare classes."""
    logits = torch.zeros(1, 3, 10, 10, requires_grad=True)
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 0, :2] = 1  # two pixels of a rare class among 100
    for loss_fn in (CrossEntropyLoss(), DyCELoss(hard_ratio=1.0, omega=0.5)):
        logits.grad = None
        loss_fn(logits, target).backward()
        if isinstance(loss_fn, CrossEntropyLoss):
            ce_rare = logits.grad[0, :, 0, 0].abs().sum()
        else:
            dyce_rare = logits.grad[0, :, 0, 0].abs().sum()
            dyce_common = logits.grad[0, :, 5, 5].abs().sum()
    assert dyce_rare > ce_rare
    assert dyce_rare > dyce_common


def test_consistency_counts_confident_teacher_pixels_over_all_pixels():
    teacher = torch.zeros(1, 3, 2, 2)
    teacher[0, 1, 0, 0] = 10.0  # confident: class 1
    teacher[0, 2, 1, 1] = 0.1  # not confident
    student = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss, passed = consistency_loss(student, *pseudo_labels(teacher), threshold=0.95)
    ce = F.cross_entropy(student, torch.tensor([[[1, 0], [0, 2]]]), reduction="none")
    assert passed.mean().item() == pytest.approx(0.25)
    assert loss.item() == pytest.approx(ce[0, 0, 0].item() / 4)
    loss.backward()
    assert torch.all(student.grad[0, :, 1, 1] == 0)


def test_class_balanced_consistency_weighs_rare_pseudo_classes_up():
    """loss.consistency_omega < 1: Eq. 9's class weights over the passed pixels (no mining), times the share
    passed; ω = 1 is Eq. 4 exactly."""
    g = torch.Generator().manual_seed(0)
    pseudo = torch.zeros(1, 8, 8, dtype=torch.long)
    pseudo[0, 0, :2] = 1  # rare class: 2 of 64 pixels
    confidence = torch.ones(1, 8, 8)
    confidence[0, 7] = 0.5  # one row fails the threshold
    student = torch.randn(1, 3, 8, 8, generator=g)
    ce = F.cross_entropy(student, pseudo, reduction="none")
    passed = confidence >= 0.95
    plain, _ = consistency_loss(student, pseudo, confidence, 0.95, omega=1.0)
    assert plain.item() == pytest.approx((ce * passed).sum().item() / 64)
    half, _ = consistency_loss(student, pseudo, confidence, 0.95, omega=0.5)
    f = {c: ((pseudo == c) & passed).sum().item() for c in (0, 1)}  # 54 and 2 passed pixels
    expected = sum(ce[(pseudo == c) & passed].sum().item() * f[c] ** -0.5 for c in (0, 1)) / 56 ** 0.5 * 56 / 64
    assert half.item() == pytest.approx(expected, rel=1e-5)
    grads = []
    for omega in (1.0, 0.5):
        s = student.clone().requires_grad_(True)
        consistency_loss(s, pseudo, confidence, 0.95, omega=omega)[0].backward()
        grads.append(s.grad[0, :, 0, 0].abs().sum() / s.grad[0, :, 3, 3].abs().sum())  # rare / common pixel
    assert grads[1] > 2 * grads[0]
