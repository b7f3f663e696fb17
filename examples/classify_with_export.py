"""Classify an image with an imgclf export, without imgclf: python classify_with_export.py EXPORT IMAGE"""
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

given = Path(sys.argv[1])
folder = given if (given / "labels.txt").is_file() else given.parent
names = ("model.keras", "saved_model", "model.tflite", "model-float16.tflite")
artifact = given if folder != given else next(folder / name for name in names if (folder / name).exists())
labels = (folder / "labels.txt").read_text(encoding="utf-8").splitlines()
if artifact.suffix == ".keras":
    model = keras.saving.load_model(artifact)
    shape, predict = model.input_shape, lambda x: model.predict(x, verbose=0)
elif artifact.suffix == ".tflite":
    runner = tf.lite.Interpreter(model_path=str(artifact)).get_signature_runner("serving_default")
    shape, predict = runner.get_input_details()["images"]["shape"], lambda x: runner(images=x)["probabilities"]
else:
    signature = tf.saved_model.load(str(artifact)).signatures["serving_default"]
    shape = signature.structured_input_signature[1]["images"].shape
    predict = lambda x: signature(images=tf.constant(x))["probabilities"].numpy()
# Decode as imgclf does: EXIF orientation, transparency on white, RGB or grayscale, bilinear resize.
image = ImageOps.exif_transpose(Image.open(sys.argv[2])).convert("RGBA")
image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
image = image.convert("RGB" if shape[3] == 3 else "L").resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
pixels = np.asarray(image, np.float32).reshape(1, shape[1], shape[2], shape[3])  # raw 0-255, no normalising
probabilities = np.asarray(predict(pixels))[0]
for index in np.argsort(-probabilities)[:3]:
    print(f"{labels[index]}\t{probabilities[index]:.6f}")
