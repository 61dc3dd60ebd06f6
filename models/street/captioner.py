"""The off-the-shelf captioner C, frozen (paper §3.2): any Hugging Face image-text-to-text model.

``model`` is a Hugging Face id (``Salesforce/blip2-opt-2.7b``, the paper's and the default of the real configs;
``Salesforce/blip-image-captioning-large``, ``florence-community/Florence-2-large``, ``google/paligemma-3b-mix-224``,
``Qwen/Qwen2.5-VL-3B-Instruct``, ``HuggingFaceTB/SmolVLM-256M-Instruct``, …), a local directory holding one, or
one of the tiny random models of ``models.street.tiny.TINY_CAPTIONERS``. All load through transformers'
``AutoModelForImageTextToText`` and ``AutoProcessor``; the families differ in how they are prompted and what
``generate`` returns, and those differences are handled here, once:

- the prompt: a task token (Florence-2: ``<MORE_DETAILED_CAPTION>``), a chat template with an image part
  (processors that carry one: LLaVA, Qwen-VL, SmolVLM, Idefics3, Gemma 3, …), or a raw prompt (BLIP, BLIP-2, GIT,
  PaliGemma: ``caption.prompt``, or none);
- the echo: decoder-only models return the prompt before the caption and it is cut off (BLIP returns one token
  fewer than it was given); encoder-decoder models (Florence-2, BLIP-2 with T5) return the caption alone;
- batches of decoder-only models are padded on the left; only floating inputs take the model's dtype; the
  modules a class keeps in float32 (``_keep_in_fp32_modules``: BLIP-2's Q-Former) stay float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.device import pick_device

TASK_PROMPTS = {"florence2": "<MORE_DETAILED_CAPTION>"}  # families prompted by a task token, exactly this one
RAW_PROMPTS = {"paligemma": "caption en"}  # raw-prompt families that need a prompt when caption.prompt is none
CHAT_INSTRUCTION = "Describe this image in one sentence."  # chat models: caption.prompt, or this
ECHO_OFFSET = {"blip": -1}  # BLIP's generate drops the prompt's end token ([SEP]) and echoes the rest


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 on GPU and fp32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def is_encoder_decoder(config) -> bool:  # noqa: ANN001
    """Whether ``generate`` returns new tokens only: the model, or its language model (BLIP-2 with T5), is
    an encoder-decoder."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return bool(getattr(config, "is_encoder_decoder", False) or getattr(text, "is_encoder_decoder", False))


def prompt_text(model_type: str, processor, prompt: str | None) -> str | None:  # noqa: ANN001
    """The text given with each image: the family's task token, the chat template applied to an image and the
    instruction, or the raw prompt (None: unconditional captioning)."""
    if model_type in TASK_PROMPTS:
        return TASK_PROMPTS[model_type]
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": prompt or CHAT_INSTRUCTION}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return prompt or RAW_PROMPTS.get(model_type)


def echo_length(config, input_ids: torch.Tensor | None) -> int:  # noqa: ANN001
    """How many leading tokens of ``generate``'s output repeat the prompt (0 for encoder-decoders)."""
    if input_ids is None or is_encoder_decoder(config):
        return 0
    return input_ids.shape[1] + ECHO_OFFSET.get(config.model_type, 0)


@dataclass
class Captioner:
    processor: object  # an AutoProcessor: image processor and tokenizer (and a chat template, for chat models)
    model: torch.nn.Module  # an AutoModelForImageTextToText, eval mode
    device: torch.device
    dtype: torch.dtype
    generation: dict = field(default_factory=dict)  # extra ``generate`` arguments (the tiny models' only)

    @torch.inference_mode()
    def __call__(self, images: list[np.ndarray], prompt: str | None, max_new_tokens: int) -> list[str]:
        """One caption per (H, W, 3) uint8 RGB image."""
        config = self.model.config
        text = prompt_text(config.model_type, self.processor, prompt)
        kwargs = {"text": [text] * len(images), "padding": True} if text is not None else {}
        inputs = self.processor(images=list(images), return_tensors="pt", **kwargs)
        inputs = {k: v.to(self.device, dtype=self.dtype if v.is_floating_point() else None)
                  for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **self.generation)
        out = out[:, echo_length(config, inputs.get("input_ids")):]
        return [s.strip() for s in self.processor.batch_decode(out, skip_special_tokens=True)]


def load_captioner(model: str, dtype: str = "auto", device: torch.device | None = None, seed: int = 0) -> Captioner:
    from models.street.tiny import RANDOM_BLIP2, TINY_CAPTIONERS, TINY_GENERATION, random_blip2_opt_2_7b, tiny_captioner

    device = device or pick_device()
    torch_dtype = resolve_dtype(dtype, device)
    if model in TINY_CAPTIONERS:
        torch.manual_seed(seed)  # the same random weights in every replica
        processor, net = tiny_captioner(model)
        generation = TINY_GENERATION
    elif model == RANDOM_BLIP2:  # the full-size architecture, random weights: benchmarks only
        torch.manual_seed(seed)
        with torch.device(device):
            processor, net = random_blip2_opt_2_7b()
        generation = {"min_new_tokens": 20}  # every caption as long as a real one: 20 new tokens
    else:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(model)
        net = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype)
        generation = {}
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None and not is_encoder_decoder(net.config):
        tokenizer.padding_side = "left"  # decoder-only: every prompt ends where generation starts
    net = cast_keeping_fp32(net, torch_dtype).to(device).eval().requires_grad_(False)
    return Captioner(processor, net, device, torch_dtype, generation)


def cast_keeping_fp32(net: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``net`` in ``dtype``, but for the parts its class keeps in float32 (``_keep_in_fp32_modules``: BLIP-2's
    Q-Former and query tokens), matched as ``from_pretrained`` matches them: a component of the name."""
    net = net.to(dtype)
    keep = set(getattr(net, "_keep_in_fp32_modules", None) or ()) | \
        set(getattr(net, "_keep_in_fp32_modules_strict", None) or ())
    for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
        if tensor.is_floating_point() and keep & set(name.split(".")):
            tensor.data = tensor.data.float()
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
