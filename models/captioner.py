"""The off-the-shelf captioner C (BLIP-2), frozen (paper §3.2).

``model`` is a Hugging Face id (``Salesforce/blip2-opt-2.7b``), a local directory holding one, or ``tiny``
(a randomly initialised BLIP-2 of the same classes). Both go through ``Blip2Processor`` and
``Blip2ForConditionalGeneration.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from models.device import pick_device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 on GPU and fp32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


@dataclass
class Captioner:
    processor: object  # Blip2Processor
    model: torch.nn.Module  # Blip2ForConditionalGeneration, eval mode
    device: torch.device
    dtype: torch.dtype

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image], prompt: str | None, max_new_tokens: int) -> list[str]:
        text = [prompt] * len(images) if prompt else None
        inputs = self.processor(images=images, text=text, return_tensors="pt", padding=bool(prompt))
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens)
        if prompt:  # decoder-only models echo the prompt: keep the new tokens
            out = out[:, inputs["input_ids"].shape[1]:]
        return [s.strip() for s in self.processor.batch_decode(out, skip_special_tokens=True)]


def load_captioner(model: str, dtype: str = "auto", device: torch.device | None = None, seed: int = 0) -> Captioner:
    from transformers import Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    device = device or pick_device()
    torch_dtype = resolve_dtype(dtype, device)
    if model == "tiny":
        from models.tiny import tiny_blip2_config, tiny_caption_tokenizer

        config = tiny_blip2_config()
        torch.manual_seed(seed)  # the same random weights in every replica
        net = Blip2ForConditionalGeneration(config)
        size = config.vision_config.image_size
        processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": size, "width": size}),
                                   tokenizer=tiny_caption_tokenizer(), num_query_tokens=config.num_query_tokens)
    else:
        processor = Blip2Processor.from_pretrained(model)
        net = Blip2ForConditionalGeneration.from_pretrained(model, dtype=torch_dtype)
    net = cast_keeping_fp32(net, torch_dtype).to(device).eval().requires_grad_(False)
    return Captioner(processor, net, device, torch_dtype)


def cast_keeping_fp32(net: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``net`` in ``dtype``, but for the parts its class keeps in float32 (``_keep_in_fp32_modules``: BLIP-2's
    Q-Former and query tokens), as ``from_pretrained`` loads them."""
    net = net.to(dtype)
    for name in getattr(net, "_keep_in_fp32_modules", None) or ():
        part = getattr(net, name)
        if isinstance(part, torch.nn.Parameter):
            part.data = part.data.float()
        else:
            part.float()
    return net


def blip2_opt_2_7b_config():
    """The architecture of Salesforce/blip2-opt-2.7b (EVA ViT-g, Q-Former, OPT-2.7b), for random-weight
    benchmarks on a machine that cannot download it."""
    from transformers import Blip2Config

    return Blip2Config(
        vision_config=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                           image_size=224, patch_size=14, qkv_bias=True),
        qformer_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            encoder_hidden_size=1408, vocab_size=30522, cross_attention_frequency=2),
        text_config=dict(model_type="opt", vocab_size=50272, hidden_size=2560, ffn_dim=10240, num_hidden_layers=32,
                         num_attention_heads=32, word_embed_proj_dim=2560, max_position_embeddings=2048,
                         pad_token_id=1, bos_token_id=2, eos_token_id=50118),
        num_query_tokens=32,
        image_token_index=50265,
    )
