"""A task is data (DESIGN §7): its class set, the kind of image it reads, and which stage modules run it.

Two tasks today: ``street`` (SSDA street scenes, 2D RGB, Cityscapes' 19 classes, the paper's Tables 1-4) and
``synapse`` (semi-supervised 3D abdominal CT, background + 13 organs, the paper's Table 5, with no language
stages). The runner, ``plan``, ``status``, the CLI, ``sweep``/``ablate``, ``split`` and the report read the task
from ``cfg.task`` and are otherwise the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.datasets import CLASS_SETS, CLASSES, IGNORE, PALETTE

SPLITS_DIR = Path(__file__).parent / "splits"  # split lists that ship with the project


@dataclass(frozen=True)
class ClassSet:
    """Names (index = class id), a colour per class, the ignored label, and the evaluation subsets."""

    names: tuple[str, ...]
    palette: np.ndarray  # (n, 3) uint8
    ignore_index: int
    subsets: dict[str | int, tuple[int, ...]]  # reported subsets of class ids (street: 19/16/13)
    short: tuple[str, ...] = ()  # column headings (Table 5's Sp, RK, ...); the names when empty

    def __len__(self) -> int:
        return len(self.names)

    def colourise(self, labels: np.ndarray) -> np.ndarray:
        """Class ids -> (..., 3) uint8 colours; ignored or unknown ids black."""
        n = len(self.palette)
        return np.where((labels < n)[..., None], self.palette[np.minimum(labels, n - 1)], 0).astype(np.uint8)


CITYSCAPES = ClassSet(CLASSES, PALETTE, IGNORE, dict(CLASS_SETS))

SYNAPSE_ORGANS = ("spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
                  "inferior vena cava", "portal & splenic veins", "pancreas", "right adrenal gland",
                  "left adrenal gland")
SYNAPSE = ClassSet(
    ("background", *SYNAPSE_ORGANS),
    np.array([(0, 0, 0), (255, 127, 80), (0, 191, 255), (30, 144, 255), (50, 205, 50), (238, 130, 238),
              (178, 34, 34), (255, 215, 0), (220, 20, 60), (72, 61, 139), (0, 206, 209), (218, 165, 32),
              (139, 69, 19), (255, 105, 180)], dtype=np.uint8),
    255,
    {"organs": tuple(range(1, 14))},
    ("bg", "Sp", "RK", "LK", "Ga", "Es", "Li", "St", "Ao", "IVC", "PSV", "PA", "RAG", "LAG"),
)


@dataclass(frozen=True)
class Task:
    name: str
    image_kind: str  # "rgb2d" or "volume3d"
    classes: ClassSet
    stages: dict[str, str]  # stage name -> module, in DAG order (inputs first)
    default_split_file: Path | None = None  # the labelled list when ``data.split_file`` is not given


STREET_STAGES = {name: f"stages.{name}" for name in
                 ("ingest", "split", "caption", "embed_text", "train", "evaluate", "report")}

TASKS = {
    "street": Task("street", "rgb2d", CITYSCAPES, STREET_STAGES),
    "synapse": Task("synapse", "volume3d", SYNAPSE,
                    {"ingest": "stages.volume_ingest", "split": "stages.split", "train": "stages.volume_train",
                     "evaluate": "stages.volume_evaluate", "report": "stages.report"},
                    default_split_file=SPLITS_DIR / "synapse" / "labeled_0.2.txt"),
}


def task_of(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task: {name!r} is not one of {', '.join(TASKS)}") from None
