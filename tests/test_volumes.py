"""The volumetric task (the paper's Table 5): reader, V-Net, the methods' losses with CE and DyCE, DSC/ASD, and
the task end to end through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.losses import DyCELoss
from models.volumes import methods
from models.volumes.methods.dhc import DiffDW, DistDW, distribution_weights
from models.volumes.methods.uamt import consistency as uamt_consistency
from models.volumes.methods.uamt import uncertainty
from models.volumes.methods.urpc import consistency as urpc_consistency
from models.volumes.parts import Batch3D, StepContext, SupervisedCE, dice_loss, soft_dice
from models.volumes.unet3d import UNet3DDS
from models.volumes.vnet import VNet
from stages.synapse.cases import Case, check_case, halve, preprocess, read_array, window, write_nifti
from stages.synapse.metrics import MISSING_ASD, asd, dice, organ_scores, summarise


# reader -------------------------------------------------------------------------------------------
def test_nifti_is_read_depth_first_as_dhc_reads_it(tmp_path):
    """On disk NIfTI holds x, y, z; the reader gives D×H×W (SimpleITK's z, y, x), and write_nifti inverts it."""
    import nibabel as nib

    xyz = np.arange(4 * 6 * 3, dtype=np.int16).reshape(4, 6, 3)  # x=4, y=6, z=3
    nib.save(nib.Nifti1Image(xyz, np.eye(4)), str(tmp_path / "v.nii.gz"))
    zyx = read_array(tmp_path / "v.nii.gz")
    assert zyx.shape == (3, 6, 4)
    assert zyx[2, 5, 1] == xyz[1, 5, 2]
    write_nifti(tmp_path / "w.nii.gz", zyx)
    assert np.array_equal(np.asarray(nib.load(str(tmp_path / "w.nii.gz")).dataobj), xyz)


def test_npy_layout_is_read_as_stored(tmp_path):
    a = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    np.save(tmp_path / "0001_image.npy", a)
    assert np.array_equal(read_array(tmp_path / "0001_image.npy"), a)


def test_hu_window_clips_then_scales_each_volume_to_unit_range():
    hu = np.array([[[-1000.0, -75.0, 100.0, 275.0, 3000.0]]])
    out = window(hu, (-75, 275))
    assert np.allclose(out, [[[0.0, 0.0, 175 / 350, 1.0, 1.0]]])
    assert np.allclose(window(hu * 0 + 40.0, (-75, 275)), 0)  # a flat volume does not divide by zero


def test_halving_keeps_depth_halves_the_plane_and_keeps_labels_exact():
    image = np.random.default_rng(0).random((5, 8, 12)).astype(np.float32)
    label = np.zeros((5, 8, 12), dtype=np.uint8)
    label[:, :4, :6] = 3
    img, lab = halve(image, label)
    assert img.shape == lab.shape == (5, 4, 6)
    assert set(np.unique(lab)) == {0, 3} and (lab[:, :2, :3] == 3).all() and (lab[:, 2:, :] == 0).all()
    img2, lab2 = preprocess(image * 350 - 75, label, (-75, 275), halve_plane=False)
    assert img2.shape == (5, 8, 12) and np.array_equal(lab2, label)


@pytest.mark.parametrize("bad, reason", [
    ("shape", "label shape"), ("range", "label values outside"), ("unreadable", "image does not read"),
    ("missing", "missing label file")])
def test_bad_cases_are_rejected_with_their_reason(tmp_path, bad, reason):
    image = np.zeros((4, 8, 8), dtype=np.int16)
    label = np.zeros((4, 8, 8), dtype=np.uint8)
    if bad == "shape":
        label = np.zeros((4, 8, 6), dtype=np.uint8)
    if bad == "range":
        label[0, 0, 0] = 14
    ip, lp = tmp_path / "imagesTr" / "img0001.nii.gz", tmp_path / "labelsTr" / "label0001.nii.gz"
    write_nifti(ip, image)
    if bad != "missing":
        write_nifti(lp, label)
    if bad == "unreadable":
        ip.write_bytes(b"not a nifti file")
    result = check_case(Case("0001", "train", ip, lp))
    assert isinstance(result, str) and reason in result


# demo volumes --------------------------------------------------------------------------------------
def test_demo_adrenal_glands_and_kidneys_are_outlined_by_retroperitoneal_fat():
    """Each kidney and adrenal gland is ringed by background at fat's HU, as in CT, so that it can be seen and not
    only placed; the organs elsewhere keep soft tissue around them."""
    from scipy import ndimage

    from stages.synapse.demo import make_case

    image, label = make_case((32, 96, 96), np.random.default_rng([0, 9]), noise=0.0)
    for organ in (2, 3, 12, 13):
        mask = label == organ
        ring = ndimage.binary_dilation(mask, iterations=1) & ~mask
        assert mask.sum() > 0 and (label[ring] == 0).mean() > 0.8, organ
        assert image[ring & (label == 0)].mean() < -60, organ
    gallbladder = label == 4
    assert image[ndimage.binary_dilation(gallbladder) & ~gallbladder].mean() > 0


# V-Net ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_size_vnet_runs_a_step_at_dhcs_patch():
    """DHC's Synapse V-Net (32 filters, 14 classes) at 64×128×128: forward and backward."""
    torch.manual_seed(0)
    net = VNet(1, 14, 32)
    assert 37e6 < sum(p.numel() for p in net.parameters()) < 38e6
    x = torch.randn(1, 1, 64, 128, 128)
    out = net(x)
    assert out.shape == (1, 14, 64, 128, 128)
    out.float().mean().backward()
    assert net.encoder[0][0].weight.grad is not None and torch.isfinite(net.encoder[0][0].weight.grad).all()


def test_vnet_small_patch_forward_backward_and_skips_are_added():
    net = VNet(1, 14, 4)
    x = torch.randn(2, 1, 16, 32, 32, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 14, 16, 32, 32)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert net.decoder[0][0].in_channels == 8 * 4  # added, not concatenated: the width stays 8n


# URPC's U-Net -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_size_urpc_unet_runs_a_step_at_dhcs_patch():
    """DHC's unet_3D_ds (feature scale 4: 16 filters, 14 classes) at 64×128×128: the pyramid, forward and
    backward."""
    torch.manual_seed(0)
    net = UNet3DDS(1, 14, 16)
    assert 5.5e6 < sum(p.numel() for p in net.parameters()) < 6e6
    outs = net(torch.randn(1, 1, 64, 128, 128), pyramid=True)
    assert [o.shape for o in outs] == [(1, 14, 64, 128, 128)] * 4
    sum(o.float().mean() for o in outs).backward()
    assert all(h.weight.grad is not None and torch.isfinite(h.weight.grad).all() for h in net.heads)


def test_urpc_unet_small_patch_gives_a_pyramid_and_concatenates_its_skips():
    net = UNet3DDS(1, 14, 2)
    x = torch.randn(2, 1, 16, 32, 32, requires_grad=True)
    outs = net(x, pyramid=True)
    assert [o.shape for o in outs] == [(2, 14, 16, 32, 32)] * 4
    assert not torch.allclose(outs[0], outs[1])  # each level has its own head
    sum(o.sum() for o in outs).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert net.decoder[0][0].in_channels == 16 * 2 + 8 * 2  # concatenated: the coarser level's and the skip's
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout3d)] == [0.5, 0.3, 0.2, 0.1]
    assert not any(isinstance(m, torch.nn.Dropout3d) for m in UNet3DDS(1, 14, 2, dropout=False).modules())
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 14, 16, 32, 32)
        assert torch.equal(net(x), net(x, pyramid=True)[0])  # the prediction is the finest level


def test_urpc_refuses_a_patch_its_bottleneck_cannot_normalise():
    from pipeline.config import load_config
    from pipeline.runner import fingerprints

    with pytest.raises(Exception, match=r"volumes.patch: URPC's U-Net .* got \(16, 16, 16\)"):
        fingerprints(load_config("configs/synapse_demo.yaml", ["volumes.method=urpc", "volumes.patch=[16,16,16]",
                                                              "paths.workdir=/nonexistent/w"]))
    assert load_config("configs/synapse_demo.yaml", ["volumes.method=urpc"]).volumes.patch == (16, 32, 32)


# the methods --------------------------------------------------------------------------------------
def build_method(name: str, num_classes: int, n_filters: int, dropout: bool, unet_filters: int = 16):
    """A registered method's networks, from the keys a checkpoint saves."""
    return methods.spec(name).build(num_classes, {"n_filters": n_filters, "dropout": dropout,
                                                  "unet_filters": unet_filters})


def method_step(m, batch, context):
    """One step of ``m``'s method, with the total loss in its logs as the trainer logs it."""
    loss, logs = methods.spec(m.name).step(m, batch, context)
    return loss, {"loss": loss.detach(), **logs}


def _batch(seed: int = 0, width: int = 16) -> Batch3D:
    """Two labelled and two unlabelled 16×16×``width`` patches (URPC's U-Net pools 4 times: width 32)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(2, 16, 16, width, dtype=torch.long)
    labels[:, 4:12, 4:12, 4:12] = 6
    labels[:, 6:8, 6:8, 6:8] = 12  # a tiny organ
    return Batch3D(torch.rand(2, 1, 16, 16, width, generator=g), labels,
                   torch.rand(2, 1, 16, 16, width, generator=g))


def _context(method: str, dyce: bool, batch: Batch3D) -> StepContext:
    state = {}
    if method == "dhc":
        counts = torch.bincount(batch.labels.flatten(), minlength=14).double()
        state = {"diffdw": DiffDW(14, 50), "distdw": DistDW(counts.float())}
    if method == "depl":
        state = {k: torch.full((1, 14, 16, 16, 16), 1 / 14) for k in ("qhat_a", "qhat_b")}
    return StepContext(SupervisedCE(dyce, 0.2, 0.5), 0.1, 3, 10, {"uamt_passes": 4, "depl_threshold": 0.9,
                                                                  "ema_alpha": 0.99}, state=state)


@pytest.mark.parametrize("method", ["supervised", "fully", "uamt", "urpc", "depl", "dhc"])
def test_each_method_steps_with_ce_and_with_dyce(method):
    """A finite loss with gradients into every trained network; with DyCE the supervised term is DyCE's."""
    losses = {}
    for dyce in (False, True):
        torch.manual_seed(0)
        m = build_method(method, 14, 2, dropout=False, unet_filters=2)
        batch = _batch(width=32 if method == "urpc" else 16)
        torch.manual_seed(1)
        loss, logs = method_step(m, batch, _context(method, dyce, batch))
        loss.backward()
        assert torch.isfinite(loss) and logs["loss"] == loss.detach()
        for net in m.networks.values():
            assert all(p.grad is not None for p in net.parameters())
        for net in m.frozen.values():
            assert all(p.grad is None for p in net.parameters())
        losses[dyce] = float(loss)
    assert losses[True] != pytest.approx(losses[False])


def test_supervised_ce_term_is_dyce_exactly_when_asked():
    """The CE term DyCE replaces: the same DyCELoss (Eq. 9) as the 2D task; plain CE otherwise, DHC's class
    weights applied only to plain CE."""
    batch = _batch()
    logits = torch.randn(2, 14, 16, 16, 16)
    assert float(SupervisedCE(True, 0.2, 0.5)(logits, batch.labels)) == pytest.approx(
        float(DyCELoss(0.2, 0.5)(logits, batch.labels)))
    plain = SupervisedCE(False, 0.2, 0.5)
    assert float(plain(logits, batch.labels)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, batch.labels)))
    w = torch.ones(14)
    w[12] = 5.0
    assert float(plain(logits, batch.labels, w)) != pytest.approx(float(plain(logits, batch.labels)))
    assert float(SupervisedCE(True, 0.2, 0.5)(logits, batch.labels, w)) == pytest.approx(
        float(DyCELoss(0.2, 0.5)(logits, batch.labels)))  # DyCE's weights replace DHC's
    assert float(SupervisedCE(True, 0.2, 0.5, keep_weights=True)(logits, batch.labels, w)) == pytest.approx(
        float(DyCELoss(0.2, 0.5)(logits, batch.labels, w)))  # volumes.dyce_keeps_weights: both


def test_dhc_unsupervised_terms_are_dyce_when_asked():
    """volumes.dyce_unsup: DHC's two cross pseudo-label CE terms become Eq. 9 over every voxel (no mining),
    each network against the other's hard labels; otherwise DHC's class-weighted CE."""
    torch.manual_seed(0)
    m, batch = build_method("dhc", 14, 2, dropout=False), _batch()
    images = torch.cat([batch.labelled, batch.unlabelled])
    with torch.no_grad():
        out_a, out_b = m.networks["a"](images), m.networks["b"](images)  # BatchNorm on batch statistics: as the step
    balanced = DyCELoss(1.0, 0.5)
    expected = float(balanced(out_a, out_b.argmax(1)) + balanced(out_b, out_a.argmax(1)))
    context = _context("dhc", True, batch)
    context.unsup_ce = balanced
    _, logs = method_step(m, batch, context)
    assert float(logs["loss_unsup"]) == pytest.approx(expected, rel=1e-4)
    _, plain = method_step(m, batch, _context("dhc", True, batch))
    assert float(plain["loss_unsup"]) != pytest.approx(expected, rel=1e-2)


def test_urpc_consistency_is_dhcs_rectified_pyramid_loss():
    """DHC's train_urpc.py, written as it is there (softmax, KLDivLoss of the log of each scale against the
    scales' mean): the same value, and 0 when every scale agrees."""
    torch.manual_seed(0)
    logits = [torch.randn(2, 5, 3, 4, 4) * 2 for _ in range(4)]
    soft = [o.softmax(1) for o in logits]
    preds = sum(soft) / 4
    kl = torch.nn.KLDivLoss(reduction="none")
    expected = 0
    for s in soft:
        variance = torch.sum(kl(torch.log(s), preds), dim=1, keepdim=True)
        w = torch.exp(-variance)
        expected = expected + torch.mean((preds - s) ** 2 * w) / (torch.mean(w) + 1e-8) + torch.mean(variance)
    assert float(urpc_consistency(logits)) == pytest.approx(float(expected / 4), rel=1e-5)
    assert float(urpc_consistency([logits[0]] * 4)) == pytest.approx(0.0, abs=1e-6)


def test_urpc_supervises_every_scale_with_the_ce_term_dyce_replaces():
    """URPC's supervised term: (CE + Dice) of each of the 4 scales on the labelled patches, over 8; with DyCE
    each scale's CE is Eq. 9."""
    batch = _batch(width=32)
    for dyce in (False, True):
        torch.manual_seed(0)
        m = build_method("urpc", 14, 2, dropout=False, unet_filters=2)
        _, logs = method_step(m, batch, _context("urpc", dyce, batch))
        outs = m.networks["net"](torch.cat([batch.labelled, batch.unlabelled]), pyramid=True)
        ce = DyCELoss(0.2, 0.5) if dyce else torch.nn.functional.cross_entropy
        expected = sum(ce(o[:2], batch.labels) + dice_loss(o[:2], batch.labels, smooth=1e-8) for o in outs) / 8
        assert float(logs["loss_sup"]) == pytest.approx(float(expected), rel=1e-5)
        finest_only = (ce(outs[0][:2], batch.labels) + dice_loss(outs[0][:2], batch.labels, smooth=1e-8)) / 2
        assert float(logs["loss_sup"]) != pytest.approx(float(finest_only), rel=1e-3)


def test_uamt_masks_the_uncertain_voxels():
    """Voxels whose teacher entropy is at or above the threshold leave the consistency term; the rest count
    (softmax squared error) / (2 Σ mask)."""
    student = torch.zeros(1, 2, 1, 1, 2)
    teacher = torch.tensor([[[[[4.0, 0.0]]], [[[0.0, 0.0]]]]])  # voxel 0 certain, voxel 1 a coin flip
    entropy = torch.tensor([[[[[0.05, math.log(2)]]]]])
    loss, mask = uamt_consistency(student, teacher, entropy, 0.75 * math.log(2))
    assert mask.flatten().tolist() == [1.0, 0.0]
    p = torch.softmax(torch.tensor([4.0, 0.0]), 0)
    expected = float(((0.5 - p) ** 2).sum()) / 2
    assert float(loss) == pytest.approx(expected)


def test_uamt_uncertainty_is_the_entropy_of_the_mean_noisy_prediction():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.cat([torch.zeros_like(x), torch.full_like(x, math.log(3))], 1)  # p = (1/4, 3/4)

    u = uncertainty(Fixed(), torch.rand(1, 1, 2, 2, 2), passes=4)
    assert u.shape == (1, 1, 2, 2, 2)
    assert torch.allclose(u, torch.tensor(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))), atol=1e-4)


def test_dhc_distribution_weights_favour_rare_classes():
    """DistDW: log(max / count) / its maximum × classes: the commonest class 0, the rarest the class count."""
    w = distribution_weights(torch.tensor([1000.0, 100.0, 10.0]))
    assert torch.allclose(w, torch.tensor([0.0, 1.5, 3.0]), atol=1e-4)
    dist = DistDW(torch.tensor([1000.0, 100.0, 10.0]), momentum=0.99)
    logits = torch.zeros(1, 3, 2, 2, 2)
    logits[:, 2] = 1  # every voxel predicted class 2
    after = dist.update(logits)
    assert torch.allclose(after, 0.99 * w + 0.01 * distribution_weights(torch.tensor([0.0, 0.0, 8.0])), atol=1e-4)


def test_dhc_difficulty_weights_rise_for_the_classes_that_are_unlearnt():
    diff = DiffDW(3, accumulate=2)
    labels = torch.tensor([0, 1, 2, 2]).view(1, 1, 1, 4)
    good = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float() * 5
    diff.update(good, labels)
    worse = good.clone()
    worse[0, :, 0, 0, 3] = torch.tensor([0.0, 5.0, 0.0])  # one voxel of class 2 now predicted 1
    w = diff.update(worse, labels)  # the Dice of classes 1 and 2 fell, class 0's did not
    assert w[1] == pytest.approx(3.0) and w[2] == pytest.approx(3.0) and w[0] < 0.5


# metrics -----------------------------------------------------------------------------------------
def test_dice_and_asd_on_hand_computed_masks():
    a = np.zeros((1, 1, 10), dtype=bool)
    b = np.zeros((1, 1, 10), dtype=bool)
    a[0, 0, 0:4] = True
    b[0, 0, 2:6] = True
    assert dice(a, b) == pytest.approx(2 * 2 / 8)
    # every voxel of a 1×1×n bar is surface; from a's voxels 0..3 to b's voxels 2..5: 2, 1, 0, 0
    assert asd(a, b) == pytest.approx(3 / 4)
    assert asd(b, a) == pytest.approx(3 / 4)
    cube = np.zeros((5, 5, 5), dtype=bool)
    cube[1:4, 1:4, 1:4] = True
    shifted = np.roll(cube, 1, axis=0)
    assert asd(cube, cube) == 0.0 and dice(cube, shifted) == pytest.approx(2 * 18 / 54)
    # brute force: from each surface voxel of the cube (its 26 voxels but the centre) to the nearest surface
    # voxel of the shifted cube, Euclidean
    ours, theirs = np.argwhere(cube & ~_inner(cube)), np.argwhere(shifted & ~_inner(shifted))
    assert len(ours) == 26
    expected = np.mean([np.linalg.norm(theirs - p, axis=1).min() for p in ours])
    assert asd(cube, shifted) == pytest.approx(expected)


def _inner(mask: np.ndarray) -> np.ndarray:
    """Voxels whose 6 neighbours are all in the mask (the rest is the surface)."""
    inner = mask.copy()
    padded = np.pad(mask, 1)
    for axis in range(3):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis)[1:-1, 1:-1, 1:-1]
    return inner


def test_dhcs_rules_for_an_organ_missing_from_prediction_or_ground_truth():
    organ = np.zeros((3, 3, 3), dtype=np.uint8)
    organ[1, 1, 1] = 4
    empty = np.zeros_like(organ)
    assert organ_scores(organ, empty, 4)[:2] == (0.0, MISSING_ASD)  # predicted, not there
    assert organ_scores(empty, organ, 4)[:2] == (0.0, MISSING_ASD)  # there, not predicted
    assert organ_scores(empty, empty, 4)[:2] == (1.0, 0.0)  # absent from both
    assert organ_scores(organ, organ, 4)[:2] == (1.0, 0.0)
    assert organ_scores(empty, empty, 4, (3.0, 1.0, 1.0))[2:] == (0.0, 0.0)
    assert all(np.isnan(organ_scores(organ, empty, 4, (3.0, 1.0, 1.0))[2:]))  # one-sided: no distance in mm
    per_organ, mean_dsc, mean_asd = summarise({"a": {4: (1.0, 0.0), 5: (0.5, 2.0)},
                                               "b": {4: (0.0, 128.0), 5: (0.5, 4.0)}}, (4, 5))
    assert {o: s[:2] for o, s in per_organ.items()} == {4: (0.5, 64.0), 5: (0.5, 3.0)}
    assert mean_dsc == 0.5 and mean_asd == 33.5


# the task end to end ------------------------------------------------------------------------------
TINY = ["volumes.demo.depth=16", "volumes.demo.height=32", "volumes.demo.width=32", "volumes.patch=[16,16,16]",
        "volumes.stride=[8,8]", "volumes.n_filters=2", "volumes.uamt_passes=2", "train.iterations=4",
        "execution.train.log_every=2", "execution.train.checkpoint_every=2", "cluster.num_cpus=2"]


def test_the_demo_task_runs_end_to_end_through_the_cli(tmp_path):
    """`semidavil run -c configs/synapse_demo.yaml`: demo volumes in the NIfTI layout, GenericSSL's split, DHC with
    DyCE, DSC/ASD on the 6 test cases, Table 5 in the report; a second run reuses every stage; `plan` names the
    key that changed; no language stage."""
    from tests.test_cli import semidavil

    config = str(Path("configs/synapse_demo.yaml").resolve())
    args = ["-c", config, "--workdir", str(tmp_path), *(arg for s in TINY for arg in ("--set", s))]
    first = semidavil("run", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "mean DSC" in first.stdout and "left adrenal gland" in first.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["data", "evaluate", "ingest", "logs",
                                                                       "report", "split", "train"]
    assert (tmp_path / "data" / "demo" / "synapse" / "imagesTr" / "img0009.nii.gz").exists()
    labelled = next((tmp_path / "split").glob("*/labelled.txt")).read_text().split()
    assert labelled == ["0009", "0021", "0025", "0034"]  # GenericSSL's 20 % split
    metrics = json.loads(next((tmp_path / "evaluate").glob("*/metrics.json")).read_text())
    assert metrics["cases"] == 6 and len(metrics["per_class"]) == 13 and 0 <= metrics["mean_dsc"] <= 1
    predictions = sorted((tmp_path / "evaluate").glob("*/predictions/*.nii.gz"))
    assert len(predictions) == 6
    import nibabel as nib

    case = predictions[0].name.removesuffix(".nii.gz")  # on the case's own grid (before the in-plane halving)
    source = nib.load(str(tmp_path / "data" / "demo" / "synapse" / "imagesTr" / f"img{case}.nii.gz"))
    assert nib.load(str(predictions[0])).shape == source.shape
    html = next((tmp_path / "report").glob("*/index.html")).read_text()
    assert 'data-table="table-5"' in html and "DHC + DyCE" in html and "57.9 / 6.4" in html
    again = semidavil("run", *args)
    assert again.returncode == 0 and again.stderr.count("skipped") == 5, again.stderr[-2000:]
    plan = semidavil("plan", *args, "--set", "loss.dyce=false")
    assert plan.returncode == 0 and "caption" not in plan.stdout
    assert "loss.dyce: True → False" in " ".join(plan.stdout.split()), plan.stdout
    assert semidavil("stage", "caption", *args).returncode == 2  # the volumetric task has no language stage
    train_dir, png = next((tmp_path / "train").glob("*")), next((tmp_path / "evaluate").glob("*/slices/*.png"))
    refused = semidavil("predict", str(train_dir), str(png), "--out", str(tmp_path / "p"))
    assert refused.returncode == 1 and "a synapse checkpoint" in refused.stderr


def test_ablate_runs_table5s_methods_with_ce_and_dyce():
    from pipeline.config import load_config
    from pipeline.experiments import ablation_cells

    cells = ablation_cells(load_config("configs/synapse_demo.yaml"))
    assert [c.name for c in cells] == [f"{m} + {loss}" for m in ("supervised", "fully", "uamt", "urpc", "depl", "dhc")
                                       for loss in ("CE", "DyCE")]
    assert ("volumes.method=uamt", "loss.dyce=true") in [c.overrides for c in cells]


def test_the_fully_supervised_row_trains_on_every_training_case(tmp_path):
    """``fully`` (the paper's published V-Net row) takes the 20 training cases as labelled, ``supervised`` the 4 of
    the split."""
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline
    from stages.index import read_split
    from stages.synapse.train.loop import training_volumes

    run_pipeline(load_config("configs/synapse_demo.yaml", [f"paths.workdir={tmp_path}", *TINY]), ["ingest", "split"])
    ingest, split = next((tmp_path / "ingest").glob("*")), read_split(next((tmp_path / "split").glob("*")))
    assert len(training_volumes(ingest, split, False).ids[0]) == 4
    assert len(training_volumes(ingest, split, False, all_labelled=methods.spec("fully").ALL_LABELLED).ids[0]) == 20
    assert methods.spec("fully").PAPER == {False: (62.1, 10.3)} and methods.spec("supervised").PAPER == {}


def test_sweep_over_labelled_counts_says_the_synapse_split_is_a_file(tmp_path):
    from tests.test_cli import semidavil

    proc = semidavil("sweep", "--labelled", "4", "-c", "configs/synapse_demo.yaml", "--workdir", str(tmp_path / "w"))
    assert proc.returncode == 2 and "data.split_file" in proc.stderr and not (tmp_path / "w").exists()


def test_a_resumed_volume_training_continues_where_it_stopped(tmp_path, monkeypatch):
    """The shared checkpoints: a run that dies after its step-2 checkpoint and is started again ends with the
    networks, optimizers and DHC's class weights of an uninterrupted run (no Ray: the worker function alone)."""
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline
    from stages.checkpoint import load_checkpoint
    from stages.synapse.train import loop

    cfg = load_config("configs/synapse_demo.yaml", [f"paths.workdir={tmp_path}", *TINY])
    run_pipeline(cfg, ["ingest", "split"])
    inputs = {"ingest": next((tmp_path / "ingest").glob("*")), "split": next((tmp_path / "split").glob("*"))}
    real = loop.optimise

    def dies_at_step_2(w, step):
        if step == 2:
            raise KeyboardInterrupt("killed")
        return real(w, step)

    monkeypatch.setattr(loop, "optimise", dies_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        loop.train_func(loop.worker_config(cfg, inputs, tmp_path / "a", use_ray=False))
    assert load_checkpoint(tmp_path / "a" / "checkpoints" / "last.safetensors").step == 2
    monkeypatch.setattr(loop, "optimise", real)
    loop.train_func(loop.worker_config(cfg, inputs, tmp_path / "a", use_ray=False))
    loop.train_func(loop.worker_config(cfg, inputs, tmp_path / "b", use_ray=False))
    a, b = (load_checkpoint(tmp_path / x / "checkpoints" / "last.safetensors") for x in ("a", "b"))
    assert a.step == b.step == 4 and sorted(a.networks) == ["a", "b", "state"]
    assert sorted(a.optimizers) == ["optimizer_a", "optimizer_b"]
    for name in a.networks:
        for key, value in a.networks[name].items():
            assert torch.equal(value, b.networks[name][key]), (name, key)
    assert not torch.equal(a.networks["state"]["distdw__weights"], torch.zeros(14))


class FixedWeights:
    """A DistDW/DiffDW stand-in whose class weights do not move."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights

    def update(self, *_):
        return self.weights


def test_dhc_cross_pseudo_label_ce_is_pytorchs_weighted_mean():
    """DHC's ``RobustCrossEntropyLoss(weight=w)``: Σ w[t]·CE / Σ w[t], so a class of weight 0 (DistDW's
    background) leaves the mean instead of diluting it."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    m, batch = build_method("dhc", 14, 2, dropout=False), _batch()
    w = torch.linspace(0, 2, 14)
    context = _context("dhc", False, batch)
    context.state = {"diffdw": FixedWeights(w), "distdw": FixedWeights(w)}
    images = torch.cat([batch.labelled, batch.unlabelled])
    with torch.no_grad():
        out_a, out_b = m.networks["a"](images), m.networks["b"](images)
    per_voxel = F.cross_entropy(out_a, out_b.argmax(1), reduction="none")
    by_weight = (w[out_b.argmax(1)] * per_voxel).sum() / w[out_b.argmax(1)].sum()
    expected = by_weight + F.cross_entropy(out_b, out_a.argmax(1), weight=w)
    _, logs = method_step(m, batch, context)
    assert float(logs["loss_unsup"]) == pytest.approx(float(expected), rel=1e-4)
    assert float(logs["loss_unsup"]) != pytest.approx(float((w[out_b.argmax(1)] * per_voxel).mean()), rel=1e-2)


def test_depl_trains_on_unshifted_logits_as_dhcs_code_unless_the_margin_is_asked():
    from models.volumes.methods.depl import debiased
    from models.volumes.parts import masked_ce

    torch.manual_seed(0)
    m, batch = build_method("depl", 14, 2, dropout=False), _batch()
    images = torch.cat([batch.labelled, batch.unlabelled])
    with torch.no_grad():
        out_a, out_b = m.networks["a"](images), m.networks["b"](images)
    prior = torch.randn(1, 14, 16, 16, 16).softmax(1)  # a skewed class prior: the margin then matters
    conf_a, pseudo_a = debiased(out_a, prior).max(1)
    conf_b, pseudo_b = debiased(out_b, prior).max(1)
    expected = masked_ce(out_a, pseudo_b, (conf_b >= 0.9).float()) + masked_ce(out_b, pseudo_a, (conf_a >= 0.9).float())

    def context(margin: bool):
        c = _context("depl", False, batch)
        c.state = {"qhat_a": prior.clone(), "qhat_b": prior.clone()}
        c.volumes = {**c.volumes, "depl_margin": margin}
        return c

    _, logs = method_step(m, batch, context(False))
    assert float(logs["loss_unsup"]) == pytest.approx(float(expected), rel=1e-4)
    _, shifted = method_step(m, batch, context(True))
    assert float(shifted["loss_unsup"]) != pytest.approx(float(expected), rel=1e-3)


def test_uamts_teacher_warms_up_by_epoch_as_dhc_counts():
    """α_e = min(1 − 1/(e+1), α) with e = step // steps per epoch: within the first epoch the teacher is the student."""
    from models.volumes.methods.uamt import teacher

    torch.manual_seed(0)
    m, batch = build_method("uamt", 14, 2, dropout=False), _batch()
    context = _context("uamt", False, batch)
    context.epoch_steps = 8
    with torch.no_grad():
        for p in m.networks["student"].parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.frozen["teacher"].parameters()]
    teacher(m, 7, context)  # epoch 0: α = 0
    assert all(torch.equal(t, s) for t, s in zip(m.frozen["teacher"].parameters(), m.networks["student"].parameters()))
    m.frozen["teacher"].load_state_dict({**m.frozen["teacher"].state_dict(),
                                         **dict(zip([n for n, _ in m.frozen["teacher"].named_parameters()], before))})
    teacher(m, 8, context)  # epoch 1: α = 0.5
    t, s = next(m.frozen["teacher"].parameters()), next(m.networks["student"].parameters())
    assert torch.allclose(t, 0.5 * before[0] + 0.5 * s)


@pytest.mark.parametrize(("method", "smooth"), [("uamt", 1e-8), ("urpc", 1e-8), ("dhc", 1.0), ("supervised", 1.0)])
def test_each_methods_dice_is_smoothed_as_its_dhc_script(method, smooth, monkeypatch):
    """DHC's train_uamt.py (and URPC's): SoftDiceLoss(smooth=1e-8); the others keep its default of 1."""
    import importlib

    module = importlib.import_module(f"models.volumes.methods.{method}")
    seen = []

    def recording(logits, labels, weight=None, smooth=1.0):
        seen.append(smooth)
        return dice_loss(logits, labels, weight, smooth)

    monkeypatch.setattr(module, "dice_loss", recording)
    torch.manual_seed(0)
    m, batch = build_method(method, 14, 2, dropout=False, unet_filters=2), _batch(width=32 if method == "urpc" else 16)
    method_step(m, batch, _context(method, False, batch))
    assert seen and set(seen) == {smooth}
    probs = torch.zeros(1, 3, 2, 2, 2)
    probs[:, 0] = 1.0  # class 2 absent from prediction and ground truth: smoothing decides its Dice
    labels = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    assert float(soft_dice(probs, labels, 1e-8)[2]) == pytest.approx(0.5)  # 1e-8 / (1e-8 + 1e-8)
    assert float(soft_dice(probs, labels, 1.0)[2]) == pytest.approx(1.0)
