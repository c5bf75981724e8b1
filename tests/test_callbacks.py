"""keras_3t.callbacks: evaluation during fit."""

import keras
import pytest

from keras_3t.callbacks import EvaluationCallback
from keras_3t.demo.toy import toy_batch
from tests.helpers import tiny_model
from tests.helpers import toy_evaluation_tasks


def test_evaluation_callback_logs_into_history_and_csv(tmp_path):
    model = tiny_model("clip")
    model.compile()
    callback = EvaluationCallback(retrieval=toy_evaluation_tasks()["retrieval"])
    csv_path = tmp_path / "log.csv"
    history = model.fit(
        toy_batch(32, seed=0),
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
    )
    assert len(history.history["val_image_to_text_r1"]) == 2
    header = csv_path.read_text().splitlines()[0].split(",")
    assert "val_text_to_image_r10" in header


def test_evaluation_callback_runs_every_n_epochs():
    callback = EvaluationCallback(retrieval=toy_evaluation_tasks()["retrieval"], every_n_epochs=2)
    callback.set_model(tiny_model("clip"))
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0}
    callback.on_epoch_end(1, logs)
    assert 0.0 <= logs["val_image_to_text_r1"] <= 1.0
    with pytest.raises(ValueError, match="every_n_epochs"):
        EvaluationCallback(retrieval=toy_evaluation_tasks()["retrieval"], every_n_epochs=0)
