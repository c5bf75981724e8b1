"""img2dataset itself, run on a URL list served from 127.0.0.1.

img2dataset pins its own dependencies, so it lives in a virtual environment
of its own, made once per machine under the user's cache folder
(`KERAS_3T_IMG2DATASET_VENV` overrides where) and installed from the
package registry. Its TFRecord writer needs tensorflow-io, which installs
there beside the TensorFlow the project is tested with. The images are
PNGs this module draws; two of the URLs point at files that do not exist,
so img2dataset records two failed downloads. Nothing leaves the loopback
interface.
"""

import csv
import functools
import http.server
import json
import os
import subprocess
import threading

import numpy as np
import tensorflow as tf

from tests.helpers import package_venv
from tests.helpers import pinned

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = 14
BROKEN = 2
PER_SHARD = 4


def packages():
    """img2dataset, and for its TFRecords tensorflow-io with the tested TensorFlow."""
    return ["img2dataset==1.47.0", *pinned("tensorflow"), "tensorflow-io==0.37.1"]


def img2dataset_command():
    """The img2dataset executable, installed into its own venv on first use."""
    return os.path.join(package_venv("img2dataset", packages()), "bin", "img2dataset")


def caption_of(index):
    return f"square number {index}"


def write_url_list(folder, port):
    """PNGs in `folder/www` and `folder/urls.tsv` naming them, and two broken URLs."""
    www = os.path.join(folder, "www")
    os.makedirs(www)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(IMAGES):
        image = rng.integers(0, 256, size=(24 + i, 30, 3), dtype=np.uint8)
        with open(os.path.join(www, f"{i}.png"), "wb") as file:
            file.write(tf.io.encode_png(image).numpy())
        rows.append((f"http://127.0.0.1:{port}/{i}.png", caption_of(i)))
    for i in range(BROKEN):
        rows.insert(3 + 5 * i, (f"http://127.0.0.1:{port}/missing_{i}.png", "never served"))
    path = os.path.join(folder, "urls.tsv")
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, delimiter="\t")
        writer.writerow(["url", "caption"])
        writer.writerows(rows)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def run_img2dataset(folder, output_formats=("webdataset", "parquet", "tfrecord")):
    """Serves the images on 127.0.0.1 and runs img2dataset once per format.

    Returns:
        `{format: output folder}`.
    """
    command = img2dataset_command()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        functools.partial(_QuietHandler, directory=os.path.join(folder, "www")),
    )
    # The URL list names the port the server was given.
    urls = write_url_list(folder, server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # The test's Keras settings are not img2dataset's: with KERAS_BACKEND set,
    # tensorflow-io fails to import in its venv.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KERAS")}
    outputs = {}
    try:
        for output_format in output_formats:
            output = os.path.join(folder, output_format)
            process = subprocess.run(
                [
                    command,
                    "--url_list", urls,
                    "--input_format", "tsv",
                    "--url_col", "url",
                    "--caption_col", "caption",
                    "--output_format", output_format,
                    "--output_folder", output,
                    "--processes_count", "1",
                    "--thread_count", "4",
                    "--image_size", "32",
                    "--number_sample_per_shard", str(PER_SHARD),
                    "--retries", "0",
                    "--timeout", "5",
                    "--enable_wandb", "False",
                ],
                env=environment,
                capture_output=True,
                text=True,
                timeout=300,
            )  # fmt: skip
            # img2dataset exits with 0 even when every shard failed.
            if process.returncode or successes(output) != IMAGES:
                raise RuntimeError(
                    f"img2dataset --output_format {output_format} failed:\n"
                    f"{process.stdout[-2000:]}\n{process.stderr[-3000:]}"
                )
            outputs[output_format] = output
    finally:
        server.shutdown()
        server.server_close()
    return outputs


def successes(output):
    """How many downloads img2dataset's `*_stats.json` files count as successes."""
    total = 0
    for name in os.listdir(output):
        if name.endswith("_stats.json"):
            with open(os.path.join(output, name)) as file:
                total += json.load(file)["successes"]
    return total
