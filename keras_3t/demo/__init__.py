"""The embedded demo: CLIP vs LiT vs 3T on generated handwritten-digit scenes.

Its modules load only when asked for, so the library itself never loads
them: `main_job` (the `keras-3t demo` command), `digit_models` (the demo's
towers and the shipped pretrained third towers), `digit_scenes` (the
handwritten-digit scenes and their captions) and `toy` (a generated toy
image-caption problem).

Example:
>>> from keras_3t.demo.toy import toy_batch
>>> sorted(toy_batch(4))
['images', 'padding_mask', 'token_ids']
"""
