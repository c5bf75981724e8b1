"""img2dataset itself, run on a URL list served from 127.0.0.1.

img2dataset pins its own dependencies, so it lives in a virtual environment
of its own, made once per machine under the user's cache folder
(`KERAS_3T_IMG2DATASET_VENV` overrides where) and installed from the
package registry. Its TFRecord writer needs tensorflow-io, which installs
there beside the TensorFlow the project is tested with. The images are
PNGs this module draws; two of the URLs point at files that do not exist,
so img2dataset records two failed downloads. Nothing leaves the loopback
interface.

What img2dataset writes depends only on this module (the images, the URL
list, the flags) and the packages, not on the Keras backend or keras_3t:
`cached_outputs` makes it once per machine, beside the venv, and every test
run (each backend's, each worker's) reads that copy.
"""

import csv
import fcntl
import functools
import hashlib
import http.server
import json
import os
import subprocess
import threading

import numpy as np
import tensorflow as tf

from keras_3t.atomic_files import staged_folder
from tests.helpers import folder_digest
from tests.helpers import package_venv
from tests.helpers import pinned

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORMATS = ("webdataset", "parquet", "tfrecord")
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


def run_img2dataset(folder, output_formats=FORMATS):
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


def cached_outputs():
    """`{format: folder}`: `run_img2dataset`'s outputs, made once per machine.

    They are kept under the user's cache folder, `keras-3t/img2dataset-outputs-
    <digest of this module and the packages>` (`KERAS_3T_IMG2DATASET_OUTPUTS`
    overrides where); test workers that ask at once make them once, the
    others waiting on a lock. Their files' digest, written beside them, is
    checked at each use: outputs that a test changed, or a run that did not
    finish, are made again.
    """
    with open(__file__, "rb") as file:
        source = file.read()
    key = hashlib.sha256(source + " ".join(packages()).encode()).hexdigest()[:12]
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    default = os.path.join(cache, "keras-3t", f"img2dataset-outputs-{key}")
    folder = os.environ.get("KERAS_3T_IMG2DATASET_OUTPUTS", default)
    recorded = os.path.join(folder, "digest")
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with open(folder + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        outputs = {f: os.path.join(folder, f) for f in FORMATS}
        if os.path.exists(recorded):
            with open(recorded) as file:
                if file.read() == _outputs_digest(outputs):
                    return outputs
        with staged_folder(folder, ".img2dataset-outputs-") as staging:
            made = run_img2dataset(staging)
            with open(os.path.join(staging, "digest"), "w") as file:
                file.write(_outputs_digest(made))
    return outputs


def _outputs_digest(outputs):
    return " ".join(folder_digest(outputs[f]) for f in FORMATS)
