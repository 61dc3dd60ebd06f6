"""The numbers users publish: confusion matrix, IoU, mIoU over 19/16/13 classes, sliding-window inference."""

from __future__ import annotations

import math

import numpy as np
import torch

from models.inference import predict
from models.sliding import window_starts as sliding_windows
from stages.street.datasets import CLASS_SETS, IGNORE
from stages.street.metrics import confusion, iou_per_class, miou


def test_confusion_counts_rows_truth_columns_prediction_and_skips_ignored():
    label = np.array([[0, 0, 1, IGNORE], [2, 2, 2, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 5], [2, 0, 2, 1]], dtype=np.uint8)
    conf = confusion(pred, label, 19)
    assert conf.sum() == 7  # the ignored pixel is not counted
    assert conf[0, 0] == 1 and conf[0, 1] == 1 and conf[1, 1] == 2 and conf[2, 2] == 2 and conf[2, 0] == 1


def test_iou_and_miou_by_hand():
    conf = np.zeros((19, 19), dtype=np.int64)
    conf[0, 0], conf[0, 1] = 8, 2  # road: 8 right, 2 called sidewalk
    conf[1, 1], conf[1, 0] = 3, 1  # sidewalk
    conf[5, 5] = 4  # pole, perfect
    conf[7, 0] = 2  # traffic sign: in the ground truth, never predicted
    conf[2, 9] = 1  # building predicted as terrain: terrain is in no ground truth, only predicted
    iou = iou_per_class(conf)
    assert iou[0] == 8 / (8 + 2 + 1 + 2)  # TP / (TP + FN + FP)
    assert iou[1] == 3 / (3 + 1 + 2)
    assert iou[5] == 1.0 and iou[7] == 0.0 and iou[2] == 0.0 and iou[9] == 0.0
    assert math.isnan(iou[3]) and math.isnan(iou[18])  # absent from both: left out, as the Cityscapes scripts do
    present = [0, 1, 2, 5, 7, 9]
    assert miou(iou, 19) == np.mean(iou[present])
    # SYNTHIA's 16 classes drop terrain (9), truck, train; the 13 also wall, fence, pole (5)
    assert miou(iou, 16) == np.mean(iou[[0, 1, 2, 5, 7]])
    assert miou(iou, 13) == np.mean(iou[[0, 1, 2, 7]])
    assert set(CLASS_SETS[13]) < set(CLASS_SETS[16]) < set(CLASS_SETS[19])


def test_sliding_windows_cover_the_image():
    assert sliding_windows(512, 512, 341) == [0]
    starts = sliding_windows(1024, 512, 341)
    assert starts[0] == 0 and starts[-1] == 512 and all(b - a <= 341 for a, b in zip(starts, starts[1:]))


class PerPixel(torch.nn.Module):
    """A model without spatial context (a 1×1 convolution): sliding windows must change nothing."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 19, 1)

    def forward(self, x, text, mask):
        return type("Out", (), {"logits": self.conv(x)})()


def test_sliding_window_inference_equals_whole_image_inference():
    torch.manual_seed(0)
    model, image = PerPixel(), torch.randn(1, 3, 100, 230)
    text, mask = torch.zeros(1, 1, 4), torch.ones(1, 1, dtype=torch.bool)
    whole = predict(model, image, text, mask, crop=64, num_classes=19, sliding=False)
    windows = predict(model, image, text, mask, crop=64, num_classes=19, sliding=True)
    torch.testing.assert_close(windows, whole)
    assert windows.shape == (1, 19, 100, 230)


def test_predictions_map_back_to_cityscapes_label_ids():
    """trainIds -> labelIds on every id a real Cityscapes label holds: each of the 19 classes returns to its own
    labelId, and an image's name gives its labelId file's (cityscapesscripts matches <city>_<seq>_<frame>)."""
    import numpy as np

    from stages.street.datasets import CITYSCAPES_LUT, label_ids_name, to_label_ids

    label_ids = np.arange(-1, 34).clip(0).astype(np.uint8).reshape(5, 7)  # 0..33 (and license plate -1 as 0)
    train_ids = CITYSCAPES_LUT[label_ids]  # as the loader reads a gtFine labelIds PNG
    back = to_label_ids(train_ids)
    evaluated = train_ids != 255
    assert np.array_equal(back[evaluated], label_ids[evaluated]) and evaluated.sum() == 19
    assert np.all(back[~evaluated] == 0)
    assert to_label_ids(np.array([0, 13, 18])).tolist() == [7, 26, 33]
    assert label_ids_name("frankfurt_000000_000294_leftImg8bit") == label_ids_name("frankfurt_000000_000294") \
        == "frankfurt_000000_000294_leftImg8bit.png"


def test_sliding_window_averages_the_windows_that_saw_each_voxel_in_3d():
    """The N-d window both tasks use: DHC's starts per axis, a side smaller than its window padded, each position
    the mean of the windows over it."""
    from models.sliding import sliding_window

    seen = []

    def probs(window):  # window k scores class 0 with k
        seen.append(tuple(window.shape[2:]))
        out = torch.zeros(1, 2, *window.shape[2:])
        out[:, 0] = len(seen)
        return out

    p = sliding_window(probs, torch.zeros(1, 1, 5, 6, 3), (4, 4, 4), (2, 2, 2), 2)
    assert p.shape == (1, 2, 5, 6, 3) and seen == [(4, 4, 4)] * 4  # depth starts 0, 1; height 0, 2; width padded
    assert float(p[0, 0, 0, 0, 0]) == 1 and float(p[0, 0, 4, 5, 2]) == 4 and float(p[0, 0, 2, 3, 1]) == 2.5
    assert sliding_windows(10, 4, 3) == [0, 3, 6] and sliding_windows(11, 4, 3) == [0, 3, 6, 7]
