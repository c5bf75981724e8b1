"""The image folder that the data tests share."""

import pytest

from tests.data.caption_files import write_images


@pytest.fixture
def image_folder(tmp_path):
    names, pixels = write_images(str(tmp_path), 6)
    return str(tmp_path), names, pixels
