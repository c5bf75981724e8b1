"""Evaluation of contrastive image-text models: retrieval, zero-shot, few-shot, α sweep."""

from keras_3t.evaluation.alpha_sweep import DEFAULT_ALPHAS
from keras_3t.evaluation.alpha_sweep import alpha_sweep
from keras_3t.evaluation.alpha_sweep import plot_alpha_sweep
from keras_3t.evaluation.embedding import embed_images
from keras_3t.evaluation.embedding import embed_texts
from keras_3t.evaluation.evaluate import evaluate_model
from keras_3t.evaluation.few_shot import few_shot_linear_probe
from keras_3t.evaluation.retrieval import retrieval_metrics
from keras_3t.evaluation.retrieval import top_k_matches
from keras_3t.evaluation.zero_shot import DEFAULT_TEMPLATES
from keras_3t.evaluation.zero_shot import zero_shot_accuracy
from keras_3t.evaluation.zero_shot import zero_shot_classifier
