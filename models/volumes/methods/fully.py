"""The fully supervised V-Net: the supervised method on every training case labelled (DHC's "V-Net (fully)", the
upper bound of the paper's Table 5), whatever the labelled split says."""

from __future__ import annotations

from typing import Any

from models.volumes.methods.supervised import step  # noqa: F401  (the same step: CE or DyCE, and Dice)
from models.volumes.parts import Method, vnet

DISPLAY = "V-Net (fully supervised)"
PAPER = {False: (62.1, 10.3)}  # DHC's and the paper's "V-Net (fully)", trained on all 20 training cases
SEMI = False
ALL_LABELLED = True  # every training case is taken as labelled


def build(num_classes: int, volumes: Any) -> Method:
    return Method("fully", {"net": vnet(num_classes, volumes)}, num_classes=num_classes)
