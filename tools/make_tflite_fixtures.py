"""Generate the small int8 TFLite fixtures used by the bit-exactness tests.

Trains a tiny CNN on scikit-learn's 8x8 digits and converts it with the real
TFLite converter (full-integer quantization, int8 input and output, per-channel
weights for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED).

Needs ``tensorflow-cpu`` and ``scikit-learn``, which are *not* project
dependencies; run it from a separate environment::

    python -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 scikit-learn==1.9.1
    /tmp/tfvenv/bin/python tools/make_tflite_fixtures.py

Writes, under ``tests/fixtures/``:

- ``digits_int8.tflite``: CONV_2D (same, RELU), DEPTHWISE_CONV_2D (multiplier 2),
  CONV_2D (stride 2, valid), RESHAPE, FULLY_CONNECTED, all weights per-channel;
- ``digits_mlp_int8.tflite``: FULLY_CONNECTED (RELU) and FULLY_CONNECTED with
  per-tensor weights (the converter's default for dense layers);
- ``digits_cnn_float.tflite``: the same CNN, float32 (for ``tvm_sima.load_model``);
- ``digits_ops_int8.tflite``: a branchy CNN with a dynamic batch dimension covering the other
  int8 ops: dilated CONV_2D, ADD, MAX_POOL_2D, AVERAGE_POOL_2D, CONCATENATION, DEPTHWISE_CONV_2D
  (RELU6), quantized STRIDED_SLICE, MEAN (global average pool), flatten written as
  SHAPE / STRIDED_SLICE / PACK / RESHAPE, and an explicit SPACE_TO_BATCH_ND / CONV_2D /
  BATCH_TO_SPACE_ND atrous convolution;
- ``digits_mlp_int8_float_io.tflite``: an int8 MLP keeping the converter's default float
  interface (QUANTIZE at the input, DEQUANTIZE at the output);
- ``digits_int8_inputs.npz``: 32 held-out images (float in [0, 1], and quantized with
  the CNN's input parameters) and their labels.
"""

from __future__ import annotations

import argparse
import logging
import pathlib

import numpy as np

LOG = logging.getLogger("make_tflite_fixtures")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # NHWC, [0, 1]
    return images, digits.target.astype(np.int64)


def _build_model():
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(8, 8, 1), batch_size=1, name="image")
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_same")(inputs)
    x = tf.keras.layers.DepthwiseConv2D(
        3, depth_multiplier=2, padding="same", activation="relu", name="dwconv_mult2"
    )(x)
    x = tf.keras.layers.Conv2D(
        16, 3, strides=2, padding="valid", activation="relu", name="conv_stride2_valid"
    )(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = tf.keras.layers.Dense(10, name="fc")(x)
    return tf.keras.Model(inputs, x)


def _build_ops_model():
    import tensorflow as tf

    def atrous(t):  # explicit space-to-batch form of a rate-2 convolution
        s2b = tf.space_to_batch_nd(t, block_shape=[2, 2], paddings=[[2, 2], [2, 2]])
        return tf.nn.conv2d(s2b, atrous_w, strides=1, padding="VALID")

    def batch_to_space(t):
        return tf.batch_to_space(t, block_shape=[2, 2], crops=[[0, 0], [0, 0]])

    atrous_w = tf.Variable(tf.random.normal([3, 3, 8, 8], stddev=0.2), name="atrous_w")
    inputs = tf.keras.Input(shape=(8, 8, 1), name="image")  # batch None: dynamic flatten
    c1 = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_same")(inputs)
    c2 = tf.keras.layers.Conv2D(8, 3, padding="same", dilation_rate=2, activation="relu", name="conv_dilated")(c1)
    a = tf.keras.layers.Add(name="add")([c1, c2])
    s2b = tf.keras.layers.Lambda(atrous, name="atrous")(a)
    b2s = tf.keras.layers.Lambda(batch_to_space, name="batch_to_space")(s2b)
    mp = tf.keras.layers.MaxPool2D(2, name="max_pool")(b2s)
    ap = tf.keras.layers.AveragePooling2D(3, strides=2, padding="same", name="avg_pool")(a)
    cat = tf.keras.layers.Concatenate(name="concat")([mp, ap])
    dw = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw_relu6")(cat)
    sl = tf.keras.layers.Lambda(lambda t: t[:, 1:, 1:, :], name="slice")(dw)
    gap = tf.keras.layers.GlobalAveragePooling2D(name="gap")(dw)
    flat = tf.keras.layers.Flatten(name="flatten")(sl)
    x = tf.keras.layers.Concatenate(name="concat_features")([gap, flat])
    x = tf.keras.layers.Dense(10, name="fc")(x)
    model = tf.keras.Model(inputs, x)
    model.atrous_w = atrous_w  # tracked so that training updates it
    return model


def _build_mlp():
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(64,), batch_size=1, name="pixels")
    x = tf.keras.layers.Dense(32, activation="relu", name="fc_relu")(inputs)
    x = tf.keras.layers.Dense(10, name="fc_logits")(x)
    return tf.keras.Model(inputs, x)


def _train(model, train_x, train_y, test_x, test_y, epochs: int, name: str) -> None:
    import tensorflow as tf

    model.compile(
        optimizer="adam",
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_x, train_y, epochs=epochs, batch_size=32, verbose=0)
    _, acc = model.evaluate(test_x, test_y, verbose=0)
    LOG.info("%s: float test accuracy %.3f", name, acc)


def _convert(model, calibration: np.ndarray, per_channel_dense: bool, int8_interface: bool = True) -> bytes:
    import tensorflow as tf

    def representative():
        for i in range(300):
            yield [calibration[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_interface:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
    return converter.convert()


def main() -> None:
    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "fixtures")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--only-ops", action="store_true", help="write digits_ops_int8.tflite only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    tf.keras.utils.set_random_seed(0)
    images, labels = _load_digits()
    train_x, train_y = images[:1500], labels[:1500]
    test_x, test_y = images[1500:], labels[1500:]

    cnn = _build_model()
    _train(cnn, train_x, train_y, test_x, test_y, args.epochs, "cnn")
    blob = _convert(cnn, train_x, per_channel_dense=True)
    mlp = _build_mlp()
    _train(mlp, train_x.reshape(-1, 64), train_y, test_x.reshape(-1, 64), test_y, args.epochs, "mlp")
    mlp_blob = _convert(mlp, train_x.reshape(-1, 64), per_channel_dense=False)

    ops = _build_ops_model()
    _train(ops, train_x, train_y, test_x, test_y, args.epochs, "ops")
    ops_blob = _convert(ops, train_x, per_channel_dense=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "digits_ops_int8.tflite").write_bytes(ops_blob)
    mlp_float_io = _build_mlp()
    _train(mlp_float_io, train_x.reshape(-1, 64), train_y, test_x.reshape(-1, 64), test_y, args.epochs, "mlp")
    (args.out / "digits_mlp_int8_float_io.tflite").write_bytes(
        _convert(mlp_float_io, train_x.reshape(-1, 64), per_channel_dense=True, int8_interface=False))
    if args.only_ops:
        return
    model_path = args.out / "digits_int8.tflite"
    model_path.write_bytes(blob)
    (args.out / "digits_mlp_int8.tflite").write_bytes(mlp_blob)
    (args.out / "digits_cnn_float.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(cnn).convert())

    interp = tf.lite.Interpreter(model_content=blob)
    scale, zero_point = interp.get_input_details()[0]["quantization"]
    samples = test_x[:32]
    q = np.clip(np.round(samples / scale) + zero_point, -128, 127).astype(np.int8)
    np.savez_compressed(args.out / "digits_int8_inputs.npz", images=q, images_float=samples, labels=test_y[:32])
    LOG.info("wrote %s (%d bytes) and %d inputs", model_path, len(blob), len(q))


if __name__ == "__main__":
    main()
