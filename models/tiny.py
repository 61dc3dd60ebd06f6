"""Tiny, randomly initialised architectures for tests and the demo.

They are the same classes as the real models (open_clip towers, BLIP-2), only smaller, so every code path
the real models take is exercised. Select them with ``model: tiny`` in the config.
"""

from __future__ import annotations

TINY_EMBED_DIM = 64  # c: output width of both tiny CLIP towers

# open_clip CLIPVisionCfg / CLIPTextCfg fields, as dicts (open_clip takes either; dicts keep the import lazy)
TINY_VISION = dict(
    layers=4,  # transformer blocks
    width=96,  # token width
    head_width=32,  # 3 heads
    patch_size=8,  # F_V is (H/8, W/8): finer than ViT-B/16, so small demo images keep detail
    image_size=64,  # native grid 8x8; other sizes interpolate the position embedding
)

TINY_TEXT = dict(
    context_length=77,  # CLIP's context, as the real text tower
    vocab_size=49408,  # CLIP's BPE vocabulary: open_clip's bundled tokenizer works unchanged
    width=64,
    heads=2,
    layers=2,
)

# A word-level vocabulary for the tiny BLIP-2's language model: random weights emit street words.
TINY_CAPTION_WORDS = (
    "<pad>", "<s>", "</s>", "<unk>", "<image>", "a", "the", "of", "with", "and", "on", "in", "near", "street",
    "road", "city", "car", "cars", "bus", "truck", "train", "person", "people", "rider", "bicycle", "motorcycle",
    "building", "buildings", "wall", "fence", "pole", "sign", "light", "tree", "trees", "grass", "sky", "sidewalk",
    "parked", "driving", "walking", "red", "blue", "green", "grey", "white", "large", "small", "busy", "empty",
)


def tiny_blip2_config():
    """A BLIP-2 (ViT + Q-Former + OPT) config with a few thousand parameters per part."""
    from transformers import Blip2Config

    vocab = len(TINY_CAPTION_WORDS)
    return Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            encoder_hidden_size=32, vocab_size=128),
        text_config=dict(model_type="opt", vocab_size=vocab, hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=128,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2),
        num_query_tokens=4,
        image_token_index=TINY_CAPTION_WORDS.index("<image>"),
    )


def tiny_caption_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_CAPTION_WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
