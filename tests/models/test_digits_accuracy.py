"""digits_cnn reaches >= 99 % on scikit-learn's 8x8 digits with augmentation.

This uses the default run's recipe (configs/digits_cnn.yaml) without the TFX pipeline:
the project's stratified splits, standardization with the training split's mean and std
(as Transform does), random crop and rotation augmentation, Adam 2e-3 with a cosine
schedule and 1 warmup epoch, 30 epochs of batch 64. It takes about 12 s of CPU.
Measured with seeds 0, 1 and 2: test accuracy 100 % each time, validation 98.9-99.3 %.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from components.ingest.digits_builder import stratified_split_indices
from components.train import optim
from components.train.augment import AugmentationPolicy
from models import create_model

EPOCHS, BATCH, LR, SEED = 30, 64, 2e-3, 0
AUGMENTATION = {"random_crop": {"p": 0.5, "pad": 1}, "rotation": {"p": 0.5, "degrees": 10}}


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    # The TFDS builder stores 0..16 as uint8 0..255; Transform scales to [0, 1] and standardizes.
    images = np.clip(np.round(data.images * (255.0 / 16.0)), 0, 255)[..., None].astype("float32") / 255.0
    split = stratified_split_indices(data.target)
    mean, std = images[split["train"]].mean(), images[split["train"]].std() + 1e-6
    images = (images - mean) / std
    return {name: (images[idx], data.target[idx]) for name, idx in split.items()}


def test_digits_cnn_reaches_99_percent(digits):
    keras.utils.set_random_seed(SEED)
    x_train, y_train = digits["train"]
    steps = len(x_train) // BATCH
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=SEED).repeat().batch(BATCH)
    dataset = AugmentationPolicy.from_config(AUGMENTATION, 10).build(SEED).apply(dataset).prefetch(2)

    model = create_model("digits_cnn", (8, 8, 1), 10)
    schedule = optim.build_schedule("cosine", LR, steps * EPOCHS, warmup_steps=steps)
    model.compile(optimizer=optim.build_optimizer("adam", schedule), loss=optim.build_loss(), metrics=["accuracy"])
    model.fit(dataset, epochs=EPOCHS, steps_per_epoch=steps, verbose=0)

    accuracy = {name: model.evaluate(*digits[name], verbose=0)[1] for name in ("validation", "test")}
    sizes = {name: len(digits[name][1]) for name in accuracy}
    held_out = sum(accuracy[n] * sizes[n] for n in accuracy) / sum(sizes.values())
    assert accuracy["test"] >= 0.99, accuracy
    assert held_out >= 0.99, accuracy
