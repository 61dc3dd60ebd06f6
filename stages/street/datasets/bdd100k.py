"""BDD100K semantic segmentation (Yu et al., CVPR 2020), 10,000 frames in the 19 Cityscapes classes:
``images/10k/{train,val}/<name>.jpg`` with ``labels/sem_seg/masks/{train,val}/<name>.png`` (trainIds, 255 ignored),
as ``bdd100k_images_10k.zip`` and ``bdd100k_sem_seg_labels_trainval.zip`` unpack (mmsegmentation's BDD100K dataset
guide; the bdd100k toolkit's ``BDD100KSemSegDataset`` reads ``images/10k`` and ``labels/sem_seg/masks``). Its
test frames have no mask and are not read. Predictions are written as trainIds, the masks' own format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.street.datasets.classes import Sample, as_class_ids, png_name, read_png

LAYOUT = "images/10k/{train,val}/*.jpg with labels/sem_seg/masks/{train,val}/*.png"
ROLES = ("source", "target")
MAX_LABEL_ID = 255
read_raw = read_png
to_train_ids = encode_prediction = as_class_ids  # trainIds in, trainIds out
prediction_name = png_name


def samples(root: Path, name: str, domain: Any = None) -> list[Sample]:
    return [Sample(f"{name}/{split}/{img.stem}", split, img, root / "labels" / "sem_seg" / "masks" / split /
                   f"{img.stem}.png")
            for split in ("train", "val") for img in sorted((root / "images" / "10k" / split).glob("*.jpg"))]
