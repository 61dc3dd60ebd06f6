"""Segmentor assembly: the VLP ablation's ImageNet weights, decoding without DLG, and the EMA teacher."""

from __future__ import annotations

import pytest
import timm
import torch

from models.ema import ema_update, make_teacher
from models.street.config import ModelConfig
from models.street.encoder import build_vision_encoder
from models.street.segmentor import build_segmentor


def test_imagenet_init_maps_timm_weights_onto_the_clip_tower(tmp_path):
    """A timm ViT of the tiny tower's shape: after mapping, every block but the last computes what timm does."""
    vit = timm.models.vision_transformer.VisionTransformer(img_size=64, patch_size=8, embed_dim=96, depth=4,
                                                           num_heads=3, num_classes=0).eval()
    path = tmp_path / "vit_imagenet.pth"
    torch.save(vit.state_dict(), path)
    enc = build_vision_encoder(ModelConfig(vision_init="imagenet", imagenet_checkpoint=path)).eval()
    visual = enc.visual
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = visual.conv1(x).flatten(2).transpose(1, 2)
        ours = torch.cat([visual.class_embedding.expand(2, 1, -1), ours], 1) + visual.positional_embedding
        ours = visual.ln_pre(ours)
        theirs = vit._pos_embed(vit.patch_embed(x))
        for ours_block, theirs_block in zip(visual.transformer.resblocks[:-1], vit.blocks[:-1], strict=True):
            ours, theirs = ours_block(ours), theirs_block(theirs)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert enc(x).shape == (2, 64, 8, 8)


def test_imagenet_init_needs_a_checkpoint():
    with pytest.raises(ValueError, match="model.imagenet_checkpoint"):
        build_vision_encoder(ModelConfig(vision_init="imagenet"))


def test_without_dlg_the_decoder_reads_f_v_alone():
    model = build_segmentor(ModelConfig(dlg=False, decoder_channels=16), text_dim=64, num_classes=19)
    assert model.dlg is None
    out = model(torch.randn(2, 3, 64, 96))
    assert out.logits.shape == (2, 19, 64, 96) and out.fused is None
    with_dlg = build_segmentor(ModelConfig(decoder_channels=16), text_dim=64, num_classes=19)
    with pytest.raises(ValueError, match="caption embeddings"):
        with_dlg(torch.randn(1, 3, 64, 64))


def test_ema_update_is_equation_6():
    student = build_segmentor(ModelConfig(dlg_dim=8, decoder_channels=8), text_dim=8, num_classes=3)
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    ema_update(teacher, student, alpha=0.9)
    for t_old, t_new, s in zip(before, teacher.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * s)
