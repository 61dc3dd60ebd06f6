from __future__ import annotations

import torch

from models.street.dlg import DenseLanguageGuidance


def inputs(b=2, c_v=8, c_l=6, n=5, h=3, w=4, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    f_v = torch.randn(b, c_v, h, w, generator=g, dtype=dtype)
    f_l = torch.randn(b, n, c_l, generator=g, dtype=dtype)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 3:] = False
    return f_v, f_l, mask


def test_shapes_and_zero_padding_rows():
    dlg = DenseLanguageGuidance(8, 6, 7)
    f_v, f_l, mask = inputs()
    f_m = dlg(f_v, f_l, mask)
    assert f_m.shape == (2, 5, 3, 4)
    assert torch.all(f_m[1, 3:] == 0) and torch.all(f_m[0] != 0)


def test_permuting_tokens_permutes_rows():
    torch.manual_seed(0)
    dlg = DenseLanguageGuidance(8, 6, 7)
    f_v, f_l, mask = inputs()
    perm = torch.tensor([4, 2, 0, 3, 1])
    out, out_perm = dlg(f_v, f_l, mask), dlg(f_v, f_l[:, perm], mask[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm])


def test_padding_embeddings_change_nothing():
    dlg = DenseLanguageGuidance(8, 6, 7)
    f_v, f_l, mask = inputs()
    other = f_l.clone()
    other[1, 3:] = 1e3 * torch.randn(2, 6)
    torch.testing.assert_close(dlg(f_v, f_l, mask), dlg(f_v, other, mask))


def test_both_normalisations_are_used():
    """Each pixel's token weights sum to 1 over real tokens; each token's pixel weights sum to 1."""
    dlg = DenseLanguageGuidance(8, 6, 7)
    f_v, f_l, mask = inputs()
    pixels = f_v.flatten(2).transpose(1, 2)
    a = dlg.key_l(f_l) @ dlg.key_v(pixels).transpose(1, 2) * dlg.scale
    # F_M rebuilt from DESIGN §3 step by step
    f_v_att = a.softmax(2) @ dlg.value_v(pixels)
    f_l_att = a.masked_fill(~mask[:, :, None], float("-inf")).softmax(1).transpose(1, 2) @ dlg.value_l(f_l)
    expected = (f_v_att @ f_l_att.transpose(1, 2)) * mask[:, :, None]
    torch.testing.assert_close(dlg(f_v, f_l, mask), expected.reshape(2, 5, 3, 4))


def test_gradcheck_float64():
    dlg = DenseLanguageGuidance(4, 3, 5).double()
    f_v, f_l, mask = inputs(b=2, c_v=4, c_l=3, n=4, h=2, w=3, dtype=torch.float64)
    mask[1, 3:] = False
    f_v.requires_grad_(), f_l.requires_grad_()
    assert torch.autograd.gradcheck(lambda v, l: dlg(v, l, mask), (f_v, f_l), eps=1e-6, atol=1e-5)


def test_pixel_text_is_what_each_pixel_gathered_from_the_words():
    """F_L^A (model.dlg_pixel_text): softmax over the real tokens of A, times V_L, at every pixel; F_M is
    unchanged by it (Eq. 2-3)."""
    torch.manual_seed(0)
    dlg = DenseLanguageGuidance(8, 6, 7)
    f_v, f_l, mask = inputs()
    f_m, f_l_att = dlg.attend(f_v, f_l, mask)
    assert torch.equal(f_m, dlg(f_v, f_l, mask)) and f_l_att.shape == (2, 7, 3, 4)
    pixels = f_v.flatten(2).transpose(1, 2)
    a = dlg.key_l(f_l[1, :3]) @ dlg.key_v(pixels[1]).T * dlg.scale  # (3 real tokens, hw)
    expected = a.softmax(0).T @ dlg.value_l(f_l[1, :3])  # (hw, d)
    torch.testing.assert_close(f_l_att[1].flatten(1).T, expected)


def test_the_decoder_reads_pixel_text_only_when_asked():
    from models.street.config import ModelConfig
    from models.street.segmentor import build_segmentor

    f_v = torch.rand(2, 3, 32, 32)
    text, mask = torch.randn(2, 4, 16), torch.ones(2, 4, dtype=torch.bool)
    for decoder in ("light", "multilevel"):
        plain = build_segmentor(ModelConfig(dlg_dim=8, decoder_channels=8, decoder=decoder), 16, 19)
        both = build_segmentor(ModelConfig(dlg_dim=8, decoder_channels=8, decoder=decoder, dlg_pixel_text=True), 16, 19)
        first = (plain.decoder.fuse if decoder == "light" else plain.decoder.top)[0]
        wider = (both.decoder.fuse if decoder == "light" else both.decoder.top)[0]
        assert wider.in_channels == first.in_channels + 8
        assert both(f_v, text, mask).logits.shape == (2, 19, 32, 32)
