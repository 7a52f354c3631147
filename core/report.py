"""Run reports (``polyvae report``): one self-contained HTML page of what a run learned, and the
same plots as PNG files.

The page holds the training curves, the KL of each latent dimension, a PCA map of the latent
space coloured by a property or label, the domain's gallery (:meth:`Domain.gallery`) and the
metrics beside the domain's published reference rows. Pictures are embedded as data URIs, so the
file can be mailed or archived alone; it loads no scripts and nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyvae.domain import Panel, require_property
from polyvae.errors import RunError, UserError
from polyvae.evaluation import (
    EvaluationSettings,
    Progress,
    mutual_information_note,
    run_evaluation,
)
from polyvae.files import atomic_write_bytes, atomic_write_text
from polyvae.run import RunDir
from polyvae.vae import ACTIVE_UNIT_THRESHOLD, gaussian_kl

# Held-out items encoded for the KL bars and the latent map: enough for a stable picture.
MAP_ITEMS = 2000
# A property with at most this many distinct whole values is coloured as classes.
MAX_CLASSES = 12

# Training-curve panels: title, then (metrics.jsonl key, legend label) pairs drawn in it.
CURVES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Loss (nats/item)", (("loss", "training loss"), ("val_elbo", "validation -ELBO"))),
    ("Reconstruction (nats/item)", (("recon", "training"), ("val_recon", "validation"))),
    ("KL (nats/item)", (("kl", "training"), ("val_kl", "validation"))),
    ("β (KL weight)", (("beta", "β"),)),
    ("Active units", (("active_units", "training"), ("val_active_units", "validation"))),
)
# The sixth panel: validation reconstruction against validation KL, epoch by epoch.
RATE_DISTORTION = "Rate-distortion path (validation)"
NEGATED = {("Loss (nats/item)", "val_elbo")}  # plotted as -ELBO beside the loss


@dataclass
class Plot:
    """One picture of the report; ``name`` is its file name under ``--png``."""

    name: str
    png: bytes
    caption: str


@dataclass
class Report:
    """What :func:`render_html` lays out and :func:`write_pngs` saves, section by section."""

    title: str
    summary: list[tuple[str, str]]
    config: dict[str, Any]
    curves: Plot | None
    kl: Plot | None
    latent: Plot | None
    gallery: list[Panel]
    metrics_header: list[str]
    metrics_rows: list[list[str]]
    notes: dict[str, str] = field(default_factory=dict)  # section -> why something is missing


def build_report(
    model: Any,
    items: Sequence[Any],
    training: Sequence[Any] = (),
    settings: EvaluationSettings | None = None,
    colour_by: str | None = None,
    evaluation: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = lambda message: None,
    progress: Progress | None = None,
) -> Report:
    """Everything the report shows for ``model`` (a :class:`polyvae.model.Model`), with
    ``items`` held out from its training and ``training`` (possibly empty) for novelty, its
    metrics evaluated with ``settings`` (default: the domain's; its seed also picks the items
    shown).
    ``evaluation``, a record of ``polyvae evaluate`` (``RunDir.read_evaluation``), supplies the
    metrics instead of evaluating again. ``progress`` hears how the evaluation advances."""
    settings = settings or EvaluationSettings()
    if len(items) < 2:
        raise UserError(f"a report needs at least 2 held-out items, got {len(items)}")
    domain = model.domain
    if colour_by is not None:  # before the slow parts
        require_property(domain, colour_by, "--colour-by")
    run = RunDir(model.run_dir)
    notes: dict[str, str] = {}
    try:
        history = run.read_metrics()
    except RunError as error:
        history, notes["curves"] = [], str(error)
    if not history and "curves" not in notes:
        notes["curves"] = "the run has no metrics.jsonl lines (no epoch finished)"

    generator = torch.Generator().manual_seed(settings.seed)
    order = torch.randperm(len(items), generator=generator)[:MAP_ITEMS].tolist()
    shown = [items[index] for index in order]
    log(f"encoding {len(shown):,} held-out items")
    mu, logvar = model.posterior(shown)

    if evaluation is not None:
        results = evaluation["results"]
        used = evaluation["settings"]
        source = f"polyvae evaluate, {evaluation['evaluated_at']} (evaluation.json)"
    else:
        resolved = settings.resolved(model)
        log(
            f"evaluating: IWAE k={resolved.k} on up to {resolved.likelihood_items:,} items, "
            f"{resolved.samples:,} samples"
        )
        results, resolved = run_evaluation(model, items, training, resolved, progress=progress)
        used = resolved.to_dict()
        source = "this report"
    notes["metrics"] = f"Computed by {source}: " + ", ".join(
        f"{name} {value}" for name, value in used.items() if value is not None
    )
    mutual_information = mutual_information_note(results)
    if mutual_information:
        notes["metrics"] += f"; {mutual_information}"
    log("drawing the gallery")
    gallery = domain.gallery(model, shown, settings.seed)

    best_epoch = model.meta.get("summary", {}).get("best_epoch")
    colours, colour_name, colour_note = _colours(model, shown, colour_by)
    if colour_note:
        notes["latent"] = colour_note
    header, rows = _metrics_table(results, domain.reference_results, run.path.name)
    return Report(
        title=f"{domain.name} run {run.path.name}",
        summary=_summary(model, history, len(training), len(items)),
        config=dict(model.config),
        curves=_curves_plot(history, best_epoch) if history else None,
        kl=_kl_plot(mu, logvar, model.engine.free_bits),
        latent=_latent_plot(mu, colours, colour_name),
        gallery=gallery,
        metrics_header=header,
        metrics_rows=rows,
        notes=notes,
    )


# --- the figures --------------------------------------------------------------------------------


def _figure(width: float, height: float, columns: int = 1, rows: int = 1):
    # The object-oriented API, not pyplot: no global state, no display needed.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _chosen_by(summary: Mapping[str, Any]) -> str:
    if summary.get("selected_by") == "reconstruction":
        return ", chosen by reconstruction under kl_target"
    return ""


def _curves_plot(history: Sequence[Mapping[str, Any]], best_epoch: int | None) -> Plot:
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(12, 6.5, columns=3, rows=2)
    epochs = [record["epoch"] for record in history]
    _rate_distortion(axes.flat[len(CURVES)], history, best_epoch)
    for axis, (title, lines) in zip(axes.flat, CURVES, strict=False):
        drawn = 0
        for key, label in lines:
            values = [_number(record.get(key)) for record in history]
            if all(math.isnan(value) for value in values):
                continue
            if (title, key) in NEGATED:
                values = [-value for value in values]
            style = "--" if key.startswith("val_") else "-"
            axis.plot(epochs, values, style, marker="." if len(epochs) < 30 else "", label=label)
            drawn += 1
        if best_epoch and title.startswith("Loss"):
            label = f"best (epoch {best_epoch})"
            axis.axvline(best_epoch, color="grey", linestyle=":", label=label)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if drawn:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=axis.transAxes)
    caption = (
        f"{len(history)} epochs from metrics.jsonl. Training numbers are the epoch's running "
        "means under that epoch's β and free bits; validation numbers are the true ELBO (β = 1). "
        "The rate-distortion path shows where each epoch sat between keeping little in z (left, "
        "high reconstruction loss) and much (right): a KL target holds it at one rate."
    )
    return Plot("curves", _png(figure), caption)


def _rate_distortion(axis: Any, history: Sequence[Mapping[str, Any]], best: int | None) -> None:
    """Validation reconstruction loss against validation KL, one point an epoch, the path drawn
    in epoch order; the last epoch and the best one marked."""
    points = [
        (record["epoch"], _number(record.get("val_kl")), _number(record.get("val_recon")))
        for record in history
    ]
    points = [point for point in points if not (math.isnan(point[1]) or math.isnan(point[2]))]
    axis.set_title(RATE_DISTORTION, fontsize=10)
    axis.set_xlabel("KL, rate (nats/item)")
    axis.set_ylabel("reconstruction, distortion (nats/item)")
    axis.grid(alpha=0.3)
    if not points:
        axis.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=axis.transAxes)
        return
    _, rates, distortions = zip(*points, strict=True)
    axis.plot(rates, distortions, "-", color="tab:blue", alpha=0.5)
    axis.scatter(rates, distortions, c=range(len(points)), cmap="viridis", s=12, zorder=3)
    axis.scatter(
        rates[-1],
        distortions[-1],
        marker="*",
        s=120,
        color="tab:red",
        zorder=4,
        label=f"end (epoch {points[-1][0]})",
    )
    chosen = [point for point in points if point[0] == best]
    if chosen:
        axis.scatter(
            chosen[0][1],
            chosen[0][2],
            marker="o",
            s=80,
            facecolors="none",
            edgecolors="black",
            zorder=4,
            label=f"best (epoch {best})",
        )
    axis.legend(fontsize=8)


def _kl_plot(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> Plot:
    kl = gaussian_kl(mu.double(), logvar.double()).mean(0).numpy()
    variance = mu.double().var(0).numpy() if len(mu) > 1 else np.zeros(len(kl))
    active = variance > ACTIVE_UNIT_THRESHOLD
    figure, axes = _figure(max(6.0, min(14.0, 0.25 * len(kl) + 3)), 3.6)
    axis = axes[0, 0]
    dims = np.arange(len(kl))
    groups = ((active, "tab:blue", "active"), (~active, "tab:gray", "inactive"))
    for chosen, colour, label in groups:
        if chosen.any():
            axis.bar(dims[chosen], kl[chosen], color=colour, label=label)
    if free_bits > 0:
        axis.axhline(free_bits, color="tab:red", linestyle=":", label=f"free bits ({free_bits:g})")
    axis.set_xlabel("latent dimension")
    axis.set_ylabel("KL (nats/item)")
    axis.set_title("KL(q(z_d | x) ‖ p(z_d)) per latent dimension", fontsize=10)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    caption = (
        f"Mean over {len(mu):,} held-out items; {int(active.sum())} of {len(kl)} dimensions "
        f"are active (Var_x E_q[z_d] > {ACTIVE_UNIT_THRESHOLD}); total KL {kl.sum():.2f} nats. "
        "Grey bars near zero are dimensions the decoder ignores (posterior collapse)."
    )
    return Plot("kl_per_dimension", _png(figure), caption)


def _latent_plot(mu: torch.Tensor, colours: Any, colour_name: str) -> Plot:
    centred = mu.double().numpy() - mu.double().numpy().mean(0)
    if centred.shape[1] >= 2:
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)
        points = centred @ directions[:2].T
        share = singular**2 / max(float((singular**2).sum()), 1e-12)
        axes_names = [f"PC{i + 1} ({share[i]:.0%} of variance)" for i in range(2)]
    else:
        points = np.column_stack([centred[:, 0], np.zeros(len(centred))])
        axes_names = ["z (the only dimension)", ""]
    figure, axes = _figure(7, 5.5)
    axis = axes[0, 0]
    size = 6 if len(points) > 500 else 14
    if colours is None:
        axis.scatter(points[:, 0], points[:, 1], s=size, alpha=0.6, color="tab:blue")
        coloured = "uncoloured"
    elif isinstance(colours, list):  # classes
        for number, label in enumerate(sorted(set(colours))):
            chosen = np.array([value == label for value in colours])
            axis.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=size,
                alpha=0.7,
                color=f"C{number % 10}",
                label=label,
            )
        axis.legend(fontsize=8, title=colour_name, markerscale=2)
        coloured = f"coloured by {colour_name}"
    else:
        known = np.isfinite(colours)
        axis.scatter(points[~known, 0], points[~known, 1], s=size, color="lightgrey")
        mapped = axis.scatter(
            points[known, 0], points[known, 1], s=size, c=colours[known], cmap="viridis"
        )
        figure.colorbar(mapped, ax=axis, label=colour_name)
        coloured = f"coloured by {colour_name}" + (
            f" (grey: {int((~known).sum())} items without a value)" if (~known).any() else ""
        )
    axis.set_xlabel(axes_names[0])
    axis.set_ylabel(axes_names[1])
    axis.set_title("Posterior means of held-out items, first two principal components", fontsize=10)
    axis.grid(alpha=0.3)
    caption = f"{len(points):,} held-out items, {coloured}."
    return Plot("latent_pca", _png(figure), caption)


def _colours(model: Any, items: Sequence[Any], colour_by: str | None) -> tuple[Any, str, str]:
    """(colours, their name, a note): a list of class names, an array of property values, or
    None. An asked-for property must exist; the default is the items' labels, else the run's
    first condition or the domain's first property, else the items' length in likelihood units
    (tokens, say)."""
    domain = model.domain
    if colour_by is not None:
        values = np.asarray(domain.properties(list(items), [colour_by]), np.float64)[:, 0]
        return _as_colours(values, colour_by) or (None, "", f"no item has a '{colour_by}'")
    labels = [getattr(item, "label", None) for item in items]
    classes = [str(label) if label is not None else "unlabelled" for label in labels]
    if any(label is not None for label in labels) and len(set(classes)) <= 2 * MAX_CLASSES:
        return classes, "label", ""
    for name in [*model.condition_names, *domain.property_names()][:1]:
        try:
            values = np.asarray(domain.properties(list(items), [name]), np.float64)[:, 0]
        except UserError:
            continue
        found = _as_colours(values, name)
        if found:
            return found
    if domain.likelihood_unit:
        counts = domain.unit_counts(model.codec.encode(list(items))).double().numpy()
        if counts.min() < counts.max():
            return counts, f"{domain.likelihood_unit}s per item", ""
    return None, "", "not coloured: the held-out items have no labels or properties"


def _as_colours(values: np.ndarray, name: str) -> tuple[Any, str, str] | None:
    """Property values as classes (few whole numbers) or as a colour scale; None if all NaN."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    if np.all(finite == np.round(finite)) and len(np.unique(finite)) <= MAX_CLASSES:
        return [f"{value:g}" if math.isfinite(value) else "none" for value in values], name, ""
    return values, name, ""


# --- tables -------------------------------------------------------------------------------------


def _summary(
    model: Any, history: Sequence[Mapping[str, Any]], training: int, held_out: int
) -> list[tuple[str, str]]:
    meta = model.meta
    summary = meta.get("summary", {})
    versions = meta.get("versions", {})
    parameters = sum(parameter.numel() for parameter in model.vae.parameters())
    seconds = sum(_number(record.get("seconds")) for record in history if "seconds" in record)
    best = summary.get("best_val_elbo")
    rows = [
        ("run", str(model.run_dir)),
        ("domain", model.domain.name),
        ("status", str(meta.get("status", "unknown"))),
        ("epochs / steps", f"{summary.get('epochs', '-')} / {summary.get('steps', '-')}"),
        *_fine_tuned_from(meta.get("init")),
        (
            "best validation ELBO",
            f"{best:.4f} (epoch {summary.get('best_epoch')}{_chosen_by(summary)})"
            if _is_number(best)
            else "-",
        ),
        ("latent dimensions", str(model.latent_dim)),
        ("parameters", f"{parameters:,}"),
        ("training / held-out items", f"{training:,} / {held_out:,}"),
        ("training time", _duration(seconds) if seconds else "-"),
        ("polyvae / torch", f"{versions.get('polyvae', '-')} / {versions.get('torch', '-')}"),
    ]
    if model.condition_names:
        rows.append(("conditioned on", ", ".join(model.condition_names)))
    return rows


def _fine_tuned_from(init: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The row naming a fine-tune's source: its curves start where the source's ended."""
    if init is None:
        return []
    return [
        (
            "fine-tuned from",
            f"{init['given']}: {init.get('epochs', '-')} epochs on {init.get('data', '-')}, "
            f"the weights of its epoch {init.get('weights_epoch', '-')}",
        )
    ]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _metrics_table(
    results: Mapping[str, float], references: Mapping[str, Mapping[str, float]], run_name: str
) -> tuple[list[str], list[list[str]]]:
    header = ["metric", run_name, *references]
    names = list(results)
    names += [name for row in references.values() for name in row if name not in names]
    rows = [
        [name, _cell(results.get(name)), *(_cell(row.get(name)) for row in references.values())]
        for name in dict.fromkeys(names)
    ]
    return header, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _number(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- output -------------------------------------------------------------------------------------


def write_html(report: Report, path: Path) -> None:
    atomic_write_text(path, render_html(report))


def write_pngs(report: Report, directory: Path) -> list[Path]:
    """The report's pictures as PNG files in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    pictures = [(plot.name, plot.png) for plot in (report.curves, report.kl, report.latent) if plot]
    pictures += [
        (f"gallery_{number}_{_slug(panel.title)}", panel.png)
        for number, panel in enumerate(report.gallery, 1)
        if panel.png
    ]
    written = []
    for name, png in pictures:
        atomic_write_bytes(directory / f"{name}.png", png)
        written.append(directory / f"{name}.png")
    return written


def render_html(report: Report) -> str:
    escape = html.escape
    sections = [
        _section("summary", "Run", _table([], [list(row) for row in report.summary]))
        + "<details><summary>Configuration</summary><pre>"
        + escape(json.dumps(report.config, indent=2, default=str))
        + "</pre></details>",
        _section("curves", "Training curves", _plot_html(report.curves, report.notes, "curves")),
        _section("kl", "KL per latent dimension", _plot_html(report.kl, report.notes, "kl")),
        _section("latent", "Latent space", _plot_html(report.latent, report.notes, "latent")),
        _section("gallery", "Gallery", "".join(_panel_html(panel) for panel in report.gallery)),
        _section(
            "metrics",
            "Metrics",
            _table(report.metrics_header, report.metrics_rows)
            + f"<p class='note'>{html.escape(report.notes.get('metrics', ''))}</p>"
            + (
                "<p class='caption'>Columns after the run's are published results the domain "
                "ships for comparison; compare like with like (their data, samples and test "
                "set).</p>"
                if len(report.metrics_header) > 2
                else ""
            ),
        ),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(report.title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(report.title)}</h1>"
        + "".join(sections)
        + "<footer>Written by polyvae report.</footer></body></html>\n"
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f3f3f3; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.caption, .note { color: #555; font-size: .9em; } .note { font-style: italic; }
figure { margin: 1em 0; } pre { background: #f7f7f7; padding: .5em; overflow-x: auto; }
footer { margin-top: 3em; color: #888; font-size: .8em; }
"""


def _section(anchor: str, title: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{html.escape(title)}</h2>{body}</section>"


def _plot_html(plot: Plot | None, notes: Mapping[str, str], section: str) -> str:
    note = f"<p class='note'>{html.escape(notes[section])}</p>" if section in notes else ""
    if plot is None:
        return note
    return (
        f"<figure>{_img(plot.png, plot.name)}"
        f"<figcaption class='caption'>{html.escape(plot.caption)}</figcaption></figure>{note}"
    )


def _panel_html(panel: Panel) -> str:
    body = _img(panel.png, panel.title) if panel.png else ""
    if panel.rows:
        body += _table(panel.rows[0], panel.rows[1:])
    caption = f"<figcaption class='caption'>{html.escape(panel.caption)}</figcaption>"
    return f"<figure><h3>{html.escape(panel.title)}</h3>{body}{caption}</figure>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    head = f"<thead><tr>{head}</tr></thead>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='number'>{html.escape(cell)}</td>"
            if _NUMBER.fullmatch(cell)
            else f"<td>{html.escape(cell)}</td>"
            for cell in map(str, row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}<tbody>{body}</tbody></table>"


_NUMBER = re.compile(r"-?[\d,]*\.?\d+(e[-+]?\d+)?")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "panel"
