"""The image folder and img2dataset's outputs that the data tests share."""

import pytest

from tests.data import img2dataset_run
from tests.data.caption_files import write_images


@pytest.fixture
def image_folder(tmp_path):
    names, pixels = write_images(str(tmp_path), 6)
    return str(tmp_path), names, pixels


@pytest.fixture(scope="session")
def img2dataset_outputs(tmp_path_factory):
    """`{format: folder}`: img2dataset's webdataset, parquet and TFRecord shards.

    Tests only read them.
    """
    return img2dataset_run.run_img2dataset(str(tmp_path_factory.mktemp("img2dataset")))
