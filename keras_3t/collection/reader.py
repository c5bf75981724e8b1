"""A finished embeddings folder, read back, and searched by caption or by image."""

import json
import os

import numpy as np

from keras_3t.collection.encoding import embedding_function
from keras_3t.collection.encoding import model_and_reference
from keras_3t.collection.encoding import model_fingerprint
from keras_3t.collection.folder import EMBEDDINGS
from keras_3t.collection.folder import FORMAT
from keras_3t.collection.folder import ITEMS
from keras_3t.collection.folder import MANIFEST
from keras_3t.collection.folder import read_manifest
from keras_3t.collection.items import Item


class EmbeddedCollection:
    """The embeddings `embed_collection` wrote, with their ids.

    Search reads only the rows it scores and the ids of its matches, so
    memory does not grow with the collection; `ids` and `captions` read
    every item, on first use.

    Attributes:
        path: the embeddings folder.
        manifest: its `manifest.json` (`settings`, `count`, `skipped`).
        embeddings: float32 `(count, dim)`, memory-mapped: rows are read
            from disk as they are used.
        ids: the items' ids, one per row.
        captions: each row's caption, or None.
    """

    def __init__(self, path, manifest, embeddings):
        self.path = path
        self.manifest = manifest
        self.embeddings = embeddings
        self._items = None

    def __len__(self):
        return len(self.embeddings)

    @property
    def ids(self):
        return [item["id"] for item in self._all_items()]

    @property
    def captions(self):
        return [item.get("caption") for item in self._all_items()]

    def _all_items(self):
        if self._items is None:
            self._items = self.items_at(range(len(self)))
        return self._items

    def items_at(self, indices):
        """The `items.jsonl` objects of the rows `indices`, in their order, in one pass."""
        wanted = set(indices)
        found = {}
        with open(os.path.join(self.path, ITEMS), encoding="utf-8") as file:
            for index, line in enumerate(file):
                if index in wanted:
                    found[index] = json.loads(line)
        if len(found) < len(wanted):
            raise ValueError(
                f"{self.path} is damaged: {ITEMS} has fewer lines than the "
                f"{len(self)} embeddings. Embed again."
            )
        return [found[index] for index in indices]

    def search(self, texts=None, images=None, model=None, top_k=5, block_size=65536):
        """The `top_k` items that best match each query, best first.

        Queries are embedded by the model that embedded the collection, at
        its α, images as `embed_collection` embeds them.

        Args:
            texts: a list of captions.
            images: a list of encoded images (the bytes of image files).
            model: the `ThreeTowerModel` or preset that embedded the
                collection; None loads the preset the manifest names.
            top_k: matches per query.
            block_size: rows scored at once (`top_k_matches`).

        Returns:
            One list per query (texts first, then images) of dicts with the
            match's `rank` (1 = best), `score`, `index` (its row), `id`, and
            `caption` where it has one.
        """
        from keras_3t.evaluation.retrieval import top_k_matches

        if not texts and not images:
            raise ValueError("Give at least one query: a caption (texts) or an image (images).")
        if len(self) == 0:
            raise ValueError(f"{self.path} holds no embeddings: every item was skipped.")
        model = self.model(model)
        weights = self.manifest["settings"]["path_weights"]
        queries = []
        for name, kind, given in (("caption", "captions", texts), ("image", "images", images)):
            if given:
                embeddings, bad = embedding_function(model, kind, weights)(_items(given, name))
                if bad:
                    raise ValueError(
                        f"Query {name} {bad[0][0] + 1} cannot be embedded: {bad[0][2]}."
                    )
                queries.append(embeddings)
        scores, indices = top_k_matches(
            np.concatenate(queries),
            self.embeddings,
            k=top_k,
            block_size=block_size,
        )
        items = dict(zip(np.unique(indices), self.items_at(np.unique(indices).tolist())))
        return [
            [
                {"rank": rank, "score": float(score), "index": int(index), **items[index]}
                for rank, (score, index) in enumerate(zip(query_scores, query_indices), 1)
            ]
            for query_scores, query_indices in zip(scores, indices)
        ]

    def model(self, model=None):
        """The model that embedded the collection: `model` checked, or the manifest's preset."""
        settings = self.manifest["settings"]
        if model is None:
            if settings["model"] is None:
                raise ValueError(
                    f"{self.path} was embedded by a model object, not a preset: pass that model."
                )
            model = settings["model"]
        model, _ = model_and_reference(model)
        if model_fingerprint(model) != settings["model_fingerprint"]:
            raise ValueError(
                f"{self.path} was embedded by another model (other weights or tokenizer) than "
                f"{settings['model'] or 'the one given'}: its queries would not be comparable."
            )
        return model


def _items(queries, field):
    if isinstance(queries, (str, bytes)):
        raise TypeError(f"Pass a list of queries, not one {type(queries).__name__}.")
    return [Item(f"query {i + 1}", **{field: query}) for i, query in enumerate(queries)]


def read_collection(path):
    """The finished embeddings folder at `path`, as an `EmbeddedCollection`.

    Raises:
        FileNotFoundError: `path` holds no embeddings.
        ValueError: they are not finished (run `embed_collection` again).
    """
    manifest = read_manifest(path) if os.path.isdir(path) else None
    if manifest is None:
        raise FileNotFoundError(f"{path} holds no embeddings ({MANIFEST} of {FORMAT!r}).")
    if not manifest["complete"]:
        raise ValueError(
            f"The embeddings in {path} are not finished: run the same keras-3t embed "
            "command (or embed_collection call) again to finish them."
        )
    embeddings = np.load(os.path.join(path, EMBEDDINGS), mmap_mode="r")
    if len(embeddings) != manifest["count"]:
        raise ValueError(
            f"{path} is damaged: {len(embeddings)} embeddings where its manifest counts "
            f"{manifest['count']}. Embed again."
        )
    return EmbeddedCollection(path, manifest, embeddings)


def search_collection(path, texts=None, images=None, model=None, top_k=5):
    """`read_collection(path).search(...)`: the `top_k` best items for each query.

    Example:
    >>> import os, tempfile
    >>> from keras_3t import embed_collection, search_collection
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "captions.txt"), "w") as file:
    ...     _ = file.write("a 3 above a 7\\na 1 left of a 2\\n")
    >>> _ = embed_collection("3t_tiny", os.path.join(folder, "embedded"),
    ...                      captions=os.path.join(folder, "captions.txt"), verbose=0)
    >>> [match] = search_collection(os.path.join(folder, "embedded"), ["a 1 left of a 2"], top_k=1)
    >>> match[0]["id"], match[0]["caption"], round(match[0]["score"], 3)
    ('line 2', 'a 1 left of a 2', 1.0)
    """
    return read_collection(path).search(texts=texts, images=images, model=model, top_k=top_k)
