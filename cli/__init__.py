"""The ``polyvae`` command line: thin commands over the Python API."""

from __future__ import annotations

import csv
import io
import json
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from polyvae import __version__
from polyvae.config import PRECISIONS, Option, load_config_file, parse_assignments
from polyvae.errors import UserError
from polyvae.files import atomic_write_bytes, atomic_write_text
from polyvae.registry import get_registry

EXIT_USER_ERROR = 2
DEFAULT_METRIC_SAMPLES = 1000  # evaluate's and report's -n
EXIT_INTERRUPTED = 130


class UserFacingError(click.ClickException):
    exit_code = EXIT_USER_ERROR


class PolyvaeGroup(click.Group):
    """Turns :class:`UserError` into one ``Error: ...`` line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise UserFacingError(str(error)) from None


def build_cli() -> click.Group:
    """The click application with every loaded plugin's commands added."""

    @click.group(cls=PolyvaeGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="polyvae")
    def cli() -> None:
        """Train and sample variational autoencoders on molecules, texts, images and more."""

    from polyvae.cli.runs import compare_command, runs_command  # it imports this module

    for command in (
        plugins_command,
        train_command,
        sample_command,
        evaluate_command,
        reconstruct_command,
        interpolate_command,
        encode_command,
        score_command,
        runs_command,
        compare_command,
        new_plugin_command,
        report_command,
    ):
        cli.add_command(command)
    get_registry().add_commands(cli)
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    # A SIGTERM (kill, a scheduler's time limit, torchrun passing one on) unwinds like Ctrl-C, so
    # temporary files are removed and worker processes stopped rather than left behind.
    # Training installs its own handler (checkpoint, then exit) and puts this one back.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    build_cli().main(args=argv, prog_name="polyvae")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --- plugins ------------------------------------------------------------------------------------


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins, their versions, domains and hooks."""
    registry = get_registry()
    plugins = [info.to_dict() for info in sorted(registry.plugins.values(), key=lambda p: p.name)]
    domains = {
        name: {"plugin": plugin, "description": domain.description}
        for name, (domain, plugin) in sorted(registry.domains.items())
    }
    if as_json:
        payload = {"plugins": plugins, "domains": domains, "conflicts": registry.conflicts}
        click.echo(json.dumps(payload, indent=2))
        return
    if not plugins:
        click.echo("no plugins installed")
        return
    rows = [("plugin", "version", "domains", "hooks", "status")]
    for plugin in plugins:
        rows.append(
            (
                plugin["name"],
                plugin["version"] or "-",
                ", ".join(plugin["domains"]) or "-",
                ", ".join(plugin["hooks"]) or "-",
                f"error: {plugin['error']}" if plugin["error"] else "ok",
            )
        )
    click.echo(_table(rows))
    for name, owners in registry.conflicts.items():
        click.echo(f"conflict: domain '{name}' is registered by {' and '.join(owners)}", err=True)


# --- train --------------------------------------------------------------------------------------


@click.command("train")
@click.argument("domain")
@click.option("--data", type=click.Path(path_type=Path), help="Training data (file or folder).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML/YAML/JSON.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Config value.")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory to create.")
@click.option("--epochs", type=int, help="Number of epochs (also extends a resumed run).")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue this run directory.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train data-parallel in N processes on this machine (one per GPU), through torchrun.",
)
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Also log to RUN/tensorboard/ for TensorBoard (needs the tensorboard package).",
)
def train_command(
    domain: str,
    data: Path | None,
    config_file: Path | None,
    assignments: tuple[str, ...],
    out: Path | None,
    epochs: int | None,
    device: str | None,
    resume: Path | None,
    quiet: bool,
    nproc: int,
    tensorboard: bool,
) -> None:
    """Train a VAE for DOMAIN on --data, writing a run directory.

    Launched by torchrun (e.g. `torchrun --nproc-per-node 4 -m polyvae.cli train ...`), or with
    --nproc N, it trains data-parallel: --set batch_size is per process."""
    from polyvae.distributed import is_main_process, launch
    from polyvae.trainer import train

    callbacks = []
    if tensorboard:  # checked here so that a missing package is one error, not one per worker
        from polyvae.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger())
    if nproc > 1:
        if resume is None:  # one clear error here rather than one from every process
            from polyvae.registry import get_domain

            overrides = load_config_file(config_file) if config_file else {}
            get_domain(domain).resolve_config(overrides | parse_assignments(assignments))
        argv = ["train", domain]
        for flag, value in (
            ("--data", data),
            ("--config", config_file),
            ("--out", out),
            ("--epochs", epochs),
            ("--device", device),
            ("--resume", resume),
        ):
            if value is not None:
                argv += [flag, str(value)]
        argv += [f"--set={assignment}" for assignment in assignments]
        argv += ["--quiet"] if quiet else []
        argv += ["--tensorboard"] if tensorboard else []
        sys.exit(launch(nproc, argv))
    config: dict[str, Any] = load_config_file(config_file) if config_file else {}
    config.update(parse_assignments(assignments))
    if epochs is not None:
        config["epochs"] = epochs
    if device is not None:
        config["device"] = device
    result = train(
        domain,
        data=data,
        config=config,
        out=out,
        resume=resume,
        progress=not quiet,
        callbacks=callbacks,
        log=(lambda message: None) if quiet else click.echo,
    )
    best = f"{result.best_val_elbo:.4f}" if result.best_val_elbo is not None else "n/a"
    if is_main_process():
        click.echo(
            f"{result.status}: {result.epochs} epochs, {result.steps} steps, best validation "
            f"ELBO {best}; run saved in {result.run_dir}"
        )
    if result.status == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if result.status == "diverged":
        sys.exit(1)


# --- sample -------------------------------------------------------------------------------------


@click.command(
    "sample", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("run")
@click.option("-n", "count", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0.0), default=1.0, show_default=True)
@click.option("--seed", type=int, help="Seed for repeatable samples.")
@click.option("--condition", multiple=True, metavar="NAME=VALUE", help="Target property value.")
@click.option("--unique", is_flag=True, help="Only distinct items.")
@click.option("--valid-only", is_flag=True, help="Only items the domain deems valid.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file.")
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="Arithmetic in place of the run's precision: fp32 keeps float32 throughout; auto takes "
    "the fastest this machine computes (bf16, int8 products).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Spread the work over N processes on this machine, through torchrun.",
)
@click.pass_context
def sample_command(
    ctx: click.Context,
    run: str,
    count: int,
    temperature: float,
    seed: int | None,
    condition: tuple[str, ...],
    unique: bool,
    valid_only: bool,
    output: Path | None,
    device: str,
    precision: str | None,
    nproc: int,
) -> None:
    """Generate items from RUN (a run directory, or a domain name for its bundled model).

    Domains add their own decoding options (e.g. --strategy beam); an unknown option's error
    lists the ones the domain has. With --nproc N (or launched by torchrun) the processes
    decode the chunks in turn and rank 0 writes them: the same items as one process.
    """
    from polyvae.distributed import launch, session, worker_device
    from polyvae.model import load

    with session() as place:
        # With --nproc everything is checked here once, on the CPU, then the workers start.
        model = load(
            run, device="cpu" if nproc > 1 else worker_device(device, place), precision=precision
        )
        domain = model.domain
        options = _domain_options(
            [*domain.generate_options, *domain.write_options], ctx.args, domain.name
        )
        writing = {option.name for option in domain.write_options}
        write_options = {name: options.pop(name) for name in list(options) if name in writing}
        if write_options and output is None:
            raise UserError(f"{', '.join(_flags(write_options))} apply to the file written with -o")
        targets = {
            key: _to_float(key, value) for key, value in parse_assignments(condition).items()
        }
        # Decoded, printed or written and scored one chunk at a time: memory stays flat for any -n.
        chunks = model.sample_chunks(
            count,
            temperature=temperature,
            seed=seed,
            condition=targets,
            unique=unique,
            valid_only=valid_only,
            place=place,
            **options,
        )
        if nproc > 1:
            argv = ["sample", run, "-n", str(count), f"--temperature={temperature}"]
            argv += [f"--seed={seed}"] if seed is not None else []
            argv += [f"--condition={assignment}" for assignment in condition]
            argv += ["--unique"] if unique else []
            argv += ["--valid-only"] if valid_only else []
            argv += [f"--output={output}"] if output is not None else []
            argv += [f"--precision={precision}"] if precision is not None else []
            sys.exit(launch(nproc, [*argv, f"--device={device}", *ctx.args]))
        if not place.is_main:
            for _ in chunks:  # this rank's share of the decoding; rank 0 writes
                pass
            return
        landing = _Landing(model, targets)
        produced = _emit_chunks(model, landing.watch(chunks), output, **write_options)
        if produced < count:
            click.echo(
                f"note: found only {produced:,} of {count:,} items that pass the filters", err=True
            )
        landing.report()


# --- evaluate -----------------------------------------------------------------------------------


def _evaluation_options(function: Any) -> Any:
    """--data, -n, -k and --likelihood-items, as evaluate and report take them."""
    for option in reversed(
        (
            click.option(
                "--data",
                type=click.Path(path_type=Path),
                help="Held-out items (default: the run's validation split).",
            ),
            click.option(
                "-n",
                "samples",
                type=click.IntRange(min=0),
                help="Samples for the domain's metrics, 0: likelihood metrics only (default 1000).",
            ),
            click.option(
                "-k",
                "importance_samples",
                type=click.IntRange(min=1),
                help="Importance samples of the IWAE bound (default: the domain's, 50; images "
                "1000).",
            ),
            click.option(
                "--likelihood-items",
                type=click.IntRange(min=0),
                help="Random held-out items for ELBO/IWAE/KL/AU/MI, 0: all (default: the "
                "domain's, 1000; images 500).",
            ),
        )
    ):
        function = option(function)
    return function


@click.command("evaluate")
@click.argument("run")
@_evaluation_options
@click.option("--temperature", type=click.FloatRange(min=0.0), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--device", default="auto", show_default=True)
def evaluate_command(
    run: str,
    data: Path | None,
    samples: int | None,
    importance_samples: int | None,
    likelihood_items: int | None,
    temperature: float,
    seed: int,
    as_json: bool,
    device: str,
) -> None:
    """ELBO, IWAE NLL, KL, active units, mutual information and the domain's metrics.

    For a run directory the results are also saved in RUN/evaluation.json (`polyvae runs` and
    `polyvae compare` show them)."""
    from polyvae.model import load
    from polyvae.run import RunDir

    # A bundled model named by its domain is shared: only a run directory gets the record.
    record_in = RunDir(run) if Path(run).is_dir() else None
    weights = record_in.weights_signature() if record_in else None
    model = load(run, device=device)
    importance_samples, likelihood_items = model.evaluation_defaults(
        importance_samples, likelihood_items
    )
    training, reference = _held_out(model, data)
    samples = DEFAULT_METRIC_SAMPLES if samples is None else samples
    results = model.evaluate(
        reference,
        k=importance_samples,
        samples=samples,
        temperature=temperature,
        seed=seed,
        training=training,
        likelihood_items=likelihood_items,
    )
    if record_in is not None:
        settings = {
            "data": str(data.resolve()) if data is not None else None,
            "k": importance_samples,
            "samples": samples,
            "likelihood_items": likelihood_items,
            "temperature": temperature,
            "seed": seed,
        }
        try:
            record_in.write_evaluation(results, settings, weights=weights)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            click.echo(
                f"note: results not saved to {record_in.evaluation_path}: {reason}", err=True
            )
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo(
            _table([("metric", "value"), *((key, _fmt(value)) for key, value in results.items())])
        )


# --- report -------------------------------------------------------------------------------------


@click.command("report")
@click.argument("run")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The HTML file (default: RUN/report.html, or DOMAIN-report.html for a bundled model).",
)
@click.option(
    "--png",
    "png_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write every plot and gallery picture as a PNG file in this folder.",
)
@_evaluation_options
@click.option("--colour-by", help="Property that colours the latent map (default: labels).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def report_command(
    run: str,
    output: Path | None,
    png_dir: Path | None,
    data: Path | None,
    samples: int | None,
    importance_samples: int | None,
    likelihood_items: int | None,
    colour_by: str | None,
    seed: int,
    device: str,
) -> None:
    """Write a self-contained HTML report of RUN: training curves, KL per latent dimension, a
    map of the latent space, the domain's gallery and its metrics beside published results."""
    from polyvae.model import load
    from polyvae.report import build_report, write_html, write_pngs
    from polyvae.run import RunDir

    model = load(run, device=device)
    training, held_out = _held_out(model, data)
    # The last `polyvae evaluate` of these weights, unless other evaluation settings are asked.
    asked = (data, samples, importance_samples, likelihood_items) != (None,) * 4
    evaluation = None if asked or not Path(run).is_dir() else RunDir(run).read_evaluation()
    if evaluation is not None:
        click.echo(
            f"metrics from {RunDir(run).evaluation_path} ({evaluation['evaluated_at']})", err=True
        )
    report = build_report(
        model,
        held_out,
        training,
        samples=DEFAULT_METRIC_SAMPLES if samples is None else samples,
        k=importance_samples,
        likelihood_items=likelihood_items,
        seed=seed,
        colour_by=colour_by,
        evaluation=evaluation,
        log=lambda message: click.echo(message, err=True),
    )
    if output is None:
        output = Path(run) / "report.html" if Path(run).is_dir() else Path(f"{run}-report.html")
    write_html(report, output)
    click.echo(f"wrote {output}", err=True)
    if png_dir is not None:
        written = write_pngs(report, png_dir)
        click.echo(f"wrote {len(written)} PNG files to {png_dir}", err=True)


# --- per-item commands --------------------------------------------------------------------------


@click.command("reconstruct")
@click.argument("run")
@click.argument("items", nargs=-1)
@click.option("--data", type=click.Path(path_type=Path), help="Read the items from a file.")
@click.option("-n", "limit", type=click.IntRange(min=1), help="Only the first N items.")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.0, show_default=True)
@click.option("--seed", type=int)
@click.option("--device", default="auto", show_default=True)
def reconstruct_command(run, items, data, limit, temperature, seed, device) -> None:
    """Encode and decode items; print each input beside its reconstruction."""
    from polyvae.model import load

    model = load(run, device=device)
    inputs = _inputs(model, items, data)[:limit]
    outputs = model.reconstruct(inputs, temperature=temperature, seed=seed)
    for original, rebuilt in zip(inputs, outputs, strict=True):
        click.echo(f"{model.domain.format_item(original)}\t{model.domain.format_item(rebuilt)}")


@click.command("interpolate")
@click.argument("run")
@click.argument("start")
@click.argument("end")
@click.option("--steps", type=click.IntRange(min=2), default=8, show_default=True)
@click.option(
    "--method", type=click.Choice(["slerp", "linear"]), default="slerp", show_default=True
)
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.0, show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file.")
@click.option("--device", default="auto", show_default=True)
def interpolate_command(run, start, end, steps, method, temperature, output, device) -> None:
    """Decode the latent path between items START and END."""
    from polyvae.model import load

    model = load(run, device=device)
    parse = model.domain.parse_item
    items = model.interpolate(
        parse(start), parse(end), steps=steps, method=method, temperature=temperature
    )
    _emit(model, items, output)


@click.command("encode")
@click.argument("run")
@click.option("--data", type=click.Path(path_type=Path), required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="A .npy file.")
@click.option("--sample", is_flag=True, help="One posterior sample per item instead of the mean.")
@click.option("--seed", type=int)
@click.option("--device", default="auto", show_default=True)
def encode_command(run, data, output, sample, seed, device) -> None:
    """Write the latent codes of --data to a .npy file (items x latent_dim)."""
    from polyvae.model import load

    if output.suffix != ".npy":
        raise UserError(f"encode writes .npy files, not {output.suffix or 'no suffix'}")
    model = load(run, device=device)
    codes = model.encode(_read(model, data), sample=sample, seed=seed)
    buffer = io.BytesIO()
    np.save(buffer, codes.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(output, buffer.getvalue())
    click.echo(f"wrote {codes.shape[0]:,} x {codes.shape[1]} latent codes to {output}")


@click.command("score")
@click.argument("run")
@click.option("--data", type=click.Path(path_type=Path), required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="A .csv file.")
@click.option(
    "-k",
    "importance_samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="1: negative ELBO; more: IWAE NLL.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Spread the work over N processes on this machine, through torchrun.",
)
def score_command(run, data, output, importance_samples, seed, device, nproc) -> None:
    """Anomaly scores (nats; higher is more unusual) of --data, written to a CSV file.

    With --nproc N (or launched by torchrun) each process scores a share of the items and
    rank 0 writes all the scores, in input order."""
    from polyvae.distributed import launch, session, worker_device
    from polyvae.model import load
    from polyvae.trainer import read_items

    with session() as place:
        if nproc > 1:  # checked here once, then every worker reads --data itself
            load(run, device="cpu")
            if not data.exists():
                raise UserError(f"no such file or folder: {data}")
            argv = ["score", run, f"--data={data}", f"--output={output}"]
            argv += ["-k", str(importance_samples), f"--seed={seed}", f"--device={device}"]
            sys.exit(launch(nproc, argv))
        model = load(run, device=worker_device(device, place))
        if place.is_main:
            items = _read(model, data)
        else:  # the same items; rank 0 reports what was skipped
            items = read_items(model.domain, data, model.config | {"max_items": 0})[0]
        scores = model.score(items, k=importance_samples, seed=seed, place=place)
        if place.is_main:
            _write_scores(model, items, scores, output)


def _write_scores(model: Any, items: Sequence[Any], scores: np.ndarray, output: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "item", "score"])
    for index, (item, value) in enumerate(zip(items, scores, strict=True)):
        writer.writerow([index, model.domain.format_item(item), f"{value:.6f}"])
    atomic_write_text(output, buffer.getvalue())
    click.echo(f"wrote {len(items):,} scores to {output}")


# --- new-plugin ---------------------------------------------------------------------------------


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to create (default: ./polyvae-NAME); must not exist or be empty.",
)
@click.pass_context
def new_plugin_command(ctx: click.Context, name: str, directory: Path | None) -> None:
    """Write a ready-to-install plugin package for a new domain NAME (rows of numeric CSV
    columns, a Gaussian VAE), with sample data and tests that use polyvae.testing."""
    from polyvae.scaffold import create_plugin

    taken = {*ctx.find_root().command.commands, *get_registry().domains}
    folder = create_plugin(name, directory, taken=taken)
    click.echo(f"wrote plugin '{name}' to {folder}")
    click.echo(f'next: pip install -e "{folder}[test]" && pytest {folder}', err=True)


# --- helpers ------------------------------------------------------------------------------------


def _read(model: Any, data: Path) -> list[Any]:
    from polyvae.trainer import read_items

    items, report = read_items(model.domain, data, model.config | {"max_items": 0})
    if report.skipped:
        click.echo(report.summary(), err=True)
    return items


def _held_out(model: Any, data: Path | None) -> tuple[list[Any], list[Any]]:
    """(training items, for novelty; held-out items): --data is held out, else the run's own
    validation split. Without the run's data at hand, training items are empty."""
    training: list[Any] = []
    try:
        training, held_out = model.data_splits()
    except UserError:
        if data is None:
            raise
    if data is not None:
        held_out = _read(model, data)
    return training, held_out


def _inputs(model: Any, items: Sequence[str], data: Path | None) -> list[Any]:
    if data is not None and items:
        raise UserError("give items on the command line or --data, not both")
    if data is not None:
        return _read(model, data)
    if not items:
        raise UserError("no items: give them on the command line or with --data")
    return [model.domain.parse_item(text) for text in items]


def _emit(model: Any, items: Sequence[Any], output: Path | None, **write_options: Any) -> None:
    _emit_chunks(model, [items], output, **write_options)


def _emit_chunks(
    model: Any, chunks: Iterable[Sequence[Any]], output: Path | None, **write_options: Any
) -> int:
    """Print the items, or write them to ``output`` through the domain's streaming writer (a
    temporary file renamed at the end); the number of items."""
    domain = model.domain
    count = 0

    def counted() -> Iterator[Sequence[Any]]:
        nonlocal count
        for chunk in chunks:
            count += len(chunk)
            yield chunk

    if output is None:
        for chunk in counted():
            click.echo("".join(domain.format_item(item) + "\n" for item in chunk), nl=False)
        return count
    if not output.suffix:
        output = output.with_suffix(domain.default_suffix)
    written = domain.write_stream(counted(), output, codec=model.codec, **write_options)
    click.echo(f"wrote {count:,} items to {written or output}", err=True)
    return count


def _flags(options: dict[str, Any]) -> list[str]:
    return ["--" + name.replace("_", "-") for name in options]


class _Landing:
    """How close the generated items' properties land to the asked-for values, tallied chunk by
    chunk (count, sum, sum of squares, absolute error per property)."""

    def __init__(self, model: Any, targets: dict[str, float]) -> None:
        self.model, self.targets, self.names = model, targets, list(targets)
        self.sums = np.zeros((4, len(self.names)))

    def watch(self, chunks: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        for chunk in chunks:
            if self.names:
                self.add(chunk)
            yield chunk

    def add(self, items: Sequence[Any]) -> None:
        values = np.asarray(self.model.domain.properties(list(items), self.names), np.float64)
        for column, name in enumerate(self.names):
            landed = values[:, column][np.isfinite(values[:, column])]
            self.sums[:, column] += (
                len(landed),
                landed.sum(),
                np.square(landed).sum(),
                np.abs(landed - self.targets[name]).sum(),
            )

    def report(self) -> None:
        for column, name in enumerate(self.names):
            count, total, squares, error = self.sums[:, column]
            if not count:
                click.echo(
                    f"{name}: target {self.targets[name]:g}, no item has this property", err=True
                )
                continue
            mean = total / count
            std = max(squares / count - mean**2, 0.0) ** 0.5
            click.echo(
                f"{name}: target {self.targets[name]:g}, generated {mean:.3f} ± {std:.3f} "
                f"(mean absolute error {error / count:.3f}, n={int(count)})",
                err=True,
            )


def _domain_options(options: Sequence[Option], args: Sequence[str], domain: str) -> dict[str, Any]:
    """Parse ``--name value`` / ``--flag`` arguments against a domain's declared options."""
    by_flag = {"--" + option.name.replace("_", "-"): option for option in options}
    parsed: dict[str, Any] = {}
    args = list(args)
    while args:
        flag = args.pop(0)
        name, _, inline = flag.partition("=")
        if name not in by_flag:
            valid = ", ".join(by_flag) or "none"
            raise UserError(f"unknown option {flag} for domain '{domain}'; its options: {valid}")
        option = by_flag[name]
        if inline:
            value: Any = inline
        elif option.type_name == "bool":
            value = True
        elif args:
            value = args.pop(0)
        else:
            raise UserError(f"option {name} needs a value")
        parsed[option.name] = option.coerce(value)
    return parsed


def _to_float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UserError(f"condition {name}: {value!r} is not a number") from None


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
