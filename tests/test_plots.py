"""plots.py: the loss curve as a PNG (no screen), with or without held-out measurements."""

import io

import matplotlib.image
import numpy as np

from thinktune.plots import loss_curve

PNG = b"\x89PNG\r\n\x1a\n"
TRAIN_BLUE, HELDOUT_ORANGE = (0x1F / 255, 0x77 / 255, 0xB4 / 255), (0xFF / 255, 0x7F / 255, 0x0E / 255)  # matplotlib's first two colours


def pixels(path, rgb) -> int:
    img = matplotlib.image.imread(path)[..., :3]
    return int((np.abs(img - np.array(rgb)).max(axis=-1) < 0.02).sum())


TRAIN = [{"step": s, "epoch": s / 10, "loss": 2.0 - 0.1 * s, "lr": 1e-4} for s in range(1, 11)]
HELD = [{"step": s, "epoch": s / 10, "eval_loss": 2.1 - 0.08 * s} for s in (0, 5, 10)]


def test_training_and_heldout_curves(tmp_path):
    path = tmp_path / "loss_curve.png"
    loss_curve(TRAIN + HELD, path, title="r1 + LoRA r=16")
    data = path.read_bytes()
    assert data[:8] == PNG
    assert matplotlib.image.imread(path).shape[:2] == (400, 700)  # 7 x 4 inches at 100 dpi
    assert pixels(path, TRAIN_BLUE) > 200 and pixels(path, HELDOUT_ORANGE) > 100


def test_records_without_eval_loss(tmp_path):
    path = tmp_path / "train_only.png"
    loss_curve(TRAIN, path)
    assert path.read_bytes()[:8] == PNG
    assert pixels(path, TRAIN_BLUE) > 200 and pixels(path, HELDOUT_ORANGE) == 0  # one curve only


def test_heldout_only_and_a_file_object(tmp_path):
    buf = io.BytesIO()  # report.py draws into memory
    loss_curve(HELD, buf)
    assert buf.getvalue()[:8] == PNG
    path = tmp_path / "held.png"
    path.write_bytes(buf.getvalue())
    assert matplotlib.image.imread(path).shape[:2] == (400, 700)
    assert pixels(path, TRAIN_BLUE) > 50 and pixels(path, HELDOUT_ORANGE) == 0  # the only curve takes the first colour


def test_the_picture_follows_the_numbers(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    loss_curve(TRAIN + HELD, a)
    loss_curve(TRAIN + [{**r, "eval_loss": 5.0} for r in HELD], b)
    assert a.read_bytes() != b.read_bytes()


def test_reward_curve_draws_each_rate_it_has(tmp_path):
    from thinktune.plots import reward_curve

    recs = [{"step": s, "reward": 0.1 * s, "accuracy": 0.05 * s, "format_rate": 0.08 * s, "cut_rate": 1 - 0.09 * s} for s in range(1, 11)]
    path = tmp_path / "reward_curve.png"
    reward_curve(recs, path)
    assert path.read_bytes()[:8] == PNG and matplotlib.image.imread(path).shape[:2] == (400, 700)
    green, red = (0x2C / 255, 0xA0 / 255, 0x2C / 255), (0xD6 / 255, 0x27 / 255, 0x28 / 255)  # matplotlib's third and fourth
    assert all(pixels(path, c) > 100 for c in (TRAIN_BLUE, HELDOUT_ORANGE, green, red))
    reward_curve([{k: v for k, v in r.items() if k != "cut_rate"} for r in recs], path)
    assert pixels(path, red) == 0  # a rate not logged is not drawn
