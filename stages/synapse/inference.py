"""The trained method on a whole case: DHC's sliding windows, and the mean DSC of a set of cases — what the test
evaluation and the model selection on the eval cases (DHC's ``best_model.pth``) both run."""

from __future__ import annotations

import numpy as np
import torch

from models.sliding import sliding_window
from stages.synapse import SYNAPSE
from stages.synapse.metrics import case_scores, summarise

ORGANS = SYNAPSE.subsets["organs"]


def predict_case(predict, image: np.ndarray, patch: tuple[int, int, int], stride: tuple[int, int], num_classes: int,
                 device: torch.device) -> np.ndarray:
    """(D, H, W) image -> (D, H, W) labels by DHC's sliding windows (``stride`` = (in-plane, depth)): the softmax
    of every window summed on the CPU, divided by the windows that saw each voxel, then argmax."""
    vol = torch.from_numpy(np.array(image, dtype=np.float32))[None, None]  # a copy: the arrays are memory-mapped
    probs = sliding_window(lambda crop: predict(crop.to(device)).float().softmax(1).cpu(), vol, patch,
                           (stride[1], stride[0], stride[0]), num_classes)
    return probs.argmax(1)[0].numpy().astype(np.uint8)


@torch.no_grad()
def mean_dsc(method, cases: dict[str, tuple[np.ndarray, np.ndarray]], patch: tuple[int, int, int],
             stride: tuple[int, int], device: torch.device) -> float:
    """Mean DSC over ``cases`` (id -> image, label) and organs, by DHC's rules, with the method's networks in
    evaluation mode (and back in training mode after), in fp32."""
    nets = [*method.networks.values()]
    for net in nets:
        net.eval()
    try:
        scores = {c: case_scores(predict_case(method.predict, image, patch, stride, len(SYNAPSE), device), label, ORGANS)
                  for c, (image, label) in cases.items()}
    finally:
        for net in nets:
            net.train()
    return summarise(scores, ORGANS)[1]
