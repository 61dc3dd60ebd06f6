"""Tiny, randomly initialised architectures for tests and the demo.

They are the same classes as the real models (open_clip towers, BLIP-2, BLIP, LLaVA), only smaller, so every
code path the real models take is exercised. Select them with ``model: tiny`` (BLIP-2) in the config, or
``tiny-blip`` / ``tiny-llava`` for the captioner (``TINY_CAPTIONERS``).
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

# A word-level vocabulary for the tiny captioners' language models: random weights emit street words.
# Specials first (their ids are fixed below), then the prompt words, then the words a caption may hold.
TINY_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<image>")
TINY_CAPTION_WORDS = (
    *TINY_SPECIALS, "a", "the", "of", "with", "and", "on", "in", "near", "street",
    "road", "city", "car", "cars", "bus", "truck", "train", "person", "people", "rider", "bicycle", "motorcycle",
    "building", "buildings", "wall", "fence", "pole", "sign", "light", "tree", "trees", "grass", "sky", "sidewalk",
    "parked", "driving", "walking", "red", "blue", "green", "grey", "white", "large", "small", "busy", "empty",
    "photo", "picture", "describe", "this", "image", "sentence", "one", "user", "assistant", ":", ".",
)
PAD, BOS, EOS, UNK, IMAGE = range(len(TINY_SPECIALS))
TINY_INIT = 0.2  # weight init std: large enough that the image, not the prompt alone, decides the words
TINY_CAPTIONERS = ("tiny", "tiny-blip", "tiny-llava")  # BLIP-2 (OPT), BLIP (BERT decoder), LLaVA (Llama, chat)
RANDOM_BLIP2 = "random-blip2-opt-2.7b"  # Salesforce/blip2-opt-2.7b's architecture, random weights: GPU benchmarks


# What random weights need for their captions to say something: no special token generated, at least 4 words,
# repeated words penalised, so captions are non-empty and differ between images. Passed to ``generate`` by the
# captioner for the tiny models only: real models keep their own generation config.
TINY_GENERATION = dict(suppress_tokens=[PAD, BOS, UNK, IMAGE], min_new_tokens=4, repetition_penalty=1.5)


def _sized(**parts):
    """Sub-configs with the tiny init std under every name the families use."""
    return {name: {**part, "initializer_range": TINY_INIT} for name, part in parts.items()}


def tiny_blip2_config():
    """A BLIP-2 (ViT + Q-Former + OPT) config with a few thousand parameters per part."""
    from transformers import Blip2Config

    vocab = len(TINY_CAPTION_WORDS)
    parts = _sized(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            encoder_hidden_size=32, vocab_size=128))
    return Blip2Config(
        **parts,
        text_config=dict(model_type="opt", vocab_size=vocab, hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=128,
                         pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, init_std=TINY_INIT),
        num_query_tokens=4, image_token_index=IMAGE, initializer_range=TINY_INIT,
    )


def tiny_blip_config():
    """A BLIP (ViT + BERT-style text decoder) config: the family that echoes one prompt token fewer than it
    was given (its generate drops the prompt's end token)."""
    from transformers import BlipConfig

    return BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8, initializer_range=TINY_INIT),
        text_config=dict(vocab_size=len(TINY_CAPTION_WORDS), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, encoder_hidden_size=32,
                         max_position_embeddings=128, pad_token_id=PAD, bos_token_id=BOS, sep_token_id=EOS,
                         eos_token_id=EOS, initializer_range=TINY_INIT),
        projection_dim=32, initializer_range=TINY_INIT,
    )


def tiny_llava_config():
    """A LLaVA (CLIP ViT + projector + Llama) config: a decoder-only chat model."""
    from transformers import LlavaConfig

    return LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
                           projection_dim=32, initializer_range=TINY_INIT),
        text_config=dict(model_type="llama", vocab_size=len(TINY_CAPTION_WORDS), hidden_size=32,
                         intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                         initializer_range=TINY_INIT),
        image_token_index=IMAGE, vision_feature_layer=-1, vision_feature_select_strategy="default",
        initializer_range=TINY_INIT,
    )


TINY_CHAT_TEMPLATE = (  # a chat template in the shape real ones have: roles, an image part, a generation prompt
    "{% for m in messages %}{{ m['role'] }} : {% for part in m['content'] %}"
    "{% if part['type'] == 'image' %}<image> {% else %}{{ part['text'] }} {% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def tiny_caption_tokenizer(wrap: bool = False):
    """The word-level tokenizer of the tiny captioners, built in memory. ``wrap``: every text becomes
    ``<s> … </s>``, as BERT's [CLS] … [SEP] in BLIP."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_CAPTION_WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if wrap:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                           special_tokens=[("<s>", BOS), ("</s>", EOS)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", extra_special_tokens=["<image>"])


def random_blip2_opt_2_7b():
    """(processor, model) of Salesforce/blip2-opt-2.7b's full-size architecture with random weights, and a
    word-level tokenizer of its vocabulary size built in memory: what a GPU benchmark times, offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor, PreTrainedTokenizerFast

    from models.street.captioner import blip2_opt_2_7b_config

    config = blip2_opt_2_7b_config()
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(4, config.text_config.vocab_size)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 224, "width": 224}),
                               tokenizer=tokenizer, num_query_tokens=config.num_query_tokens)
    return processor, Blip2ForConditionalGeneration(config)


def tiny_captioner(name: str):
    """(processor, model) of a tiny captioner family, randomly initialised (seed the caller's)."""
    from transformers import (
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        CLIPImageProcessor,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    if name == "tiny":
        config = tiny_blip2_config()
        net, size = Blip2ForConditionalGeneration(config), config.vision_config.image_size
        processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": size, "width": size}),
                                   tokenizer=tiny_caption_tokenizer(), num_query_tokens=config.num_query_tokens)
    elif name == "tiny-blip":
        config = tiny_blip_config()
        net, size = BlipForConditionalGeneration(config), config.vision_config.image_size
        processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": size, "width": size}),
                                  tokenizer=tiny_caption_tokenizer(wrap=True))
    elif name == "tiny-llava":
        config = tiny_llava_config()
        net, size = LlavaForConditionalGeneration(config), config.vision_config.image_size
        processor = LlavaProcessor(
            image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
            tokenizer=tiny_caption_tokenizer(), patch_size=config.vision_config.patch_size,
            vision_feature_select_strategy="default", num_additional_image_tokens=1,  # the CLS token
            chat_template=TINY_CHAT_TEMPLATE)
    else:
        raise ValueError(f"caption.model: unknown tiny captioner {name!r} (one of {', '.join(TINY_CAPTIONERS)})")
    return processor, net
