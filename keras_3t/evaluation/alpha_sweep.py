"""The α sweep: every metric along the convex combination of 3T and its third tower."""

from keras_3t.combination import path_weights
from keras_3t.evaluation.evaluate import check_tasks
from keras_3t.evaluation.evaluate import combine_task_embeddings
from keras_3t.evaluation.evaluate import embed_tasks
from keras_3t.evaluation.evaluate import metrics_from_embeddings
from keras_3t.extras import require

DEFAULT_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


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
    With several frozen towers, 1 − α is shared equally among their paths.
    Everything is embedded once per path, not once per α, and combined per
    α; the zero-shot classifier of each path is averaged over the templates
    and normalised on its own before it is combined, so every class score
    is exactly s_α.

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
    by_path = embed_tasks(model, tasks, model.path_names, batch_size, verbose)
    table = []
    for alpha in alphas:
        weights = path_weights(model.path_names, alpha)
        embeddings = combine_task_embeddings(tasks, by_path, weights)
        table.append({"alpha": alpha, **metrics_from_embeddings(tasks, embeddings)})
    return table


# Legend and panel names of the metrics `evaluate_model` returns.
METRIC_NAMES = {
    "zero_shot_top1": "zero-shot top-1",
    "zero_shot_top5": "zero-shot top-5",
    **{
        f"{direction}_r{k}": f"{name} R@{k}"
        for direction, name in (("image_to_text", "image→text"), ("text_to_image", "text→image"))
        for k in (1, 5, 10)
    },
}


def plot_alpha_sweep(
    table,
    path,
    metrics=None,
    title="Metrics along the α combination",
    references=None,
    chance=None,
):
    """Plots each metric against α, one panel per metric, to a PNG file.

    Args:
        table: the list of dicts `alpha_sweep` returns.
        path: the PNG file to write.
        metrics: the metric names to plot (default: all but the few-shot
            probe's `*_std` and `*_l2`).
        title: the figure title.
        references: optional `{model name: {metric: value}}`, e.g. the
            CLIP and LiT baselines' metrics, drawn as dashed horizontal lines.
        chance: optional `{metric: value}`, drawn as a dotted grey line.

    Returns:
        `path`.
    """
    # A Figure without pyplot: no global state, no GUI backend chosen.
    Figure = require("matplotlib.figure").Figure

    if not table:
        raise ValueError("The α-sweep table is empty.")
    if metrics is None:
        metrics = [k for k in table[0] if k != "alpha" and not k.endswith(("_std", "_l2"))]
    unknown = [m for m in metrics if m not in table[0]]
    if unknown:
        raise ValueError(f"Metrics {unknown} are not in the table; it has {sorted(table[0])}.")
    references = references or {}
    chance = chance or {}
    alphas = [row["alpha"] for row in table]
    columns = min(len(metrics), 3)
    rows = -(-len(metrics) // columns)
    figure = Figure(figsize=(4 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True)
    styles = ["--", "-."]
    for axis, metric in zip(axes.flat, metrics):
        axis.plot(
            alphas, [row[metric] for row in table], marker="o", color="C0", label="3T along α"
        )
        for (name, values), style, colour in zip(
            references.items(), styles * 4, ("C1", "C2", "C3", "C4")
        ):
            if metric in values:
                axis.axhline(values[metric], linestyle=style, color=colour, label=name)
        if metric in chance:
            axis.axhline(chance[metric], linestyle=":", color="grey", label="chance")
        axis.set_title(METRIC_NAMES.get(metric, metric))
        axis.set_xlabel("α (0: third-tower path, 1: 3T's towers)")
        axis.set_ylabel("accuracy" if "zero_shot" in metric else "recall")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(
        handles,
        labels,
        loc="lower right" if len(metrics) % columns else "upper right",
        fontsize="small",
    )
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
