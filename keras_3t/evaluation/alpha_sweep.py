"""The α sweep: every metric along the convex combination of 3T and its third tower."""

import numpy as np

from keras_3t.evaluation.evaluate import check_tasks
from keras_3t.evaluation.evaluate import embed_tasks
from keras_3t.evaluation.evaluate import metrics_from_embeddings

DEFAULT_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


def _combine(main, third, alpha):
    """[√α main, √(1−α) third], as `encode_image` / `encode_text` build it."""
    if alpha == 1.0:
        return main
    weight_main = np.float32(np.sqrt(alpha))
    weight_third = np.float32(np.sqrt(1.0 - alpha))
    return np.concatenate([weight_main * main, weight_third * third], axis=-1)


def alpha_sweep(
    model,
    alphas=DEFAULT_ALPHAS,
    retrieval=None,
    zero_shot=None,
    few_shot=None,
    batch_size=256,
    verbose=0,
):
    """Every chosen metric at each α of a 3T model.

    The embeddings at α are `[√α f, √(1−α) h_g]` (images) and
    `[√α g, √(1−α) g_h]` (texts); α = 1 is 3T, α = 0 the third-tower path.
    Everything is embedded twice (main towers, third-tower path), not once
    per α, and combined per α.

    Args:
        model: a `ThreeTowerModel` with objective "3t".
        alphas: the α values, each in [0, 1].
        retrieval, zero_shot, few_shot: task dicts, as `evaluate_model` takes.
        batch_size: examples embedded per batch.
        verbose: 1 shows progress bars.

    Returns:
        A list of dicts, one per α: `{"alpha": α, <metric>: value, ...}`;
        `pandas.DataFrame(table)` makes a table of it.
    """
    if model.objective != "3t":
        raise ValueError(
            f"alpha_sweep needs a '3t' model (only it has a third tower); this "
            f"model's objective is {model.objective!r}."
        )
    alphas = [float(alpha) for alpha in alphas]
    bad = [alpha for alpha in alphas if not 0.0 <= alpha <= 1.0]
    if not alphas or bad:
        raise ValueError(f"alphas must be a non-empty list of values in [0, 1]; got {alphas}.")
    tasks = check_tasks(retrieval=retrieval, zero_shot=zero_shot, few_shot=few_shot)
    main = embed_tasks(model, tasks, 1.0, batch_size, verbose)
    # At α = 0 the encoders return [0 · main, third]: keep the third part.
    third = {
        name: embedding[:, main[name].shape[-1] :]
        for name, embedding in embed_tasks(model, tasks, 0.0, batch_size, verbose).items()
    }
    table = []
    for alpha in alphas:
        embeddings = {name: _combine(main[name], third[name], alpha) for name in main}
        table.append({"alpha": alpha, **metrics_from_embeddings(tasks, embeddings)})
    return table


def plot_alpha_sweep(table, path, metrics=None, title="Metrics along the α combination"):
    """Plots metric vs α, one line per metric, to a PNG file.

    Args:
        table: the list of dicts `alpha_sweep` returns.
        path: the PNG file to write.
        metrics: the metric names to plot (default: all but `*_std`).
        title: the figure title.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not table:
        raise ValueError("The α-sweep table is empty.")
    if metrics is None:
        metrics = [k for k in table[0] if k != "alpha" and not k.endswith("_std")]
    unknown = [m for m in metrics if m not in table[0]]
    if unknown:
        raise ValueError(f"Metrics {unknown} are not in the table; it has {sorted(table[0])}.")
    alphas = [row["alpha"] for row in table]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for metric in metrics:
        axes.plot(alphas, [row[metric] for row in table], marker="o", label=metric)
    axes.set_xlabel("α (0: third-tower path, 1: 3T main towers)")
    axes.set_ylabel("metric")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
