"""``polyvae sample``: items generated from a run or a domain's bundled model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from polyvae.cli.items import emit_chunks
from polyvae.cli.options import (
    device_option,
    output_option,
    prior_option,
    quiet_option,
    seed_option,
    temperature_option,
)
from polyvae.cli.progress import progress_bars
from polyvae.cli.relaunch import nproc_option, relaunch
from polyvae.config import PRECISIONS, Option, parse_assignments
from polyvae.errors import UserError
from polyvae.wording import plural


@click.command(
    "sample", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("run")
@click.option("-n", "count", type=click.IntRange(min=1), default=10, show_default=True)
@temperature_option(default=1.0)
@seed_option(help="Seed for repeatable samples.")
@click.option("--condition", multiple=True, metavar="NAME=VALUE", help="Target property value.")
@click.option("--unique", is_flag=True, help="Only distinct items.")
@click.option(
    "--keep-invalid",
    is_flag=True,
    help="Also write items the domain deems invalid (by default only valid ones are written, and "
    "the summary gives the raw validity).",
)
@prior_option
@output_option()
@device_option()
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="Arithmetic in place of the run's precision: fp32 keeps float32 throughout; auto takes "
    "the fastest this machine computes (bf16, int8 products).",
)
@nproc_option()
@quiet_option
@click.pass_context
def sample_command(
    ctx: click.Context,
    run: str,
    count: int,
    temperature: float,
    seed: int | None,
    condition: tuple[str, ...],
    unique: bool,
    keep_invalid: bool,
    prior: str | None,
    output: Path | None,
    device: str,
    precision: str | None,
    nproc: int,
    quiet: bool,
) -> None:
    """Generate items from RUN (a run directory, or a domain name for its bundled model).

    Domains add their own decoding options (e.g. --strategy beam); an unknown option's error
    lists the ones the domain has. With --nproc N (or launched by torchrun) the processes
    decode the chunks in turn and rank 0 writes them: the same items as one process.
    """
    from polyvae.distributed import session, worker_device
    from polyvae.model import load

    with session() as place, progress_bars(quiet) as progress:
        # With --nproc everything is checked here once, on the CPU, then the workers start.
        model = load(
            run, device="cpu" if nproc > 1 else worker_device(device, place), precision=precision
        )
        domain = model.domain
        options = domain_options(
            [*domain.generate_options, *domain.write_options], ctx.args, domain.name
        )
        writing = {option.name for option in domain.write_options}
        write_options = {name: options.pop(name) for name in list(options) if name in writing}
        if write_options and output is None:
            flags = ", ".join("--" + name.replace("_", "-") for name in write_options)
            raise UserError(f"{flags} apply to the file written with -o")
        targets = {key: _number(key, value) for key, value in parse_assignments(condition).items()}
        summary = Summary(model)
        valid_only = summary.judges_validity and not keep_invalid
        # Decoded, printed or written and scored one chunk at a time: memory stays flat for any -n.
        chunks = model.sample_chunks(
            count,
            temperature=temperature,
            seed=seed,
            condition=targets,
            unique=unique,
            valid_only=valid_only,
            place=place,
            prior=prior,
            tally=summary.tally if valid_only else None,
            progress=progress if place.is_main else None,
            **options,
        )
        if nproc > 1:
            relaunch(ctx, nproc)
        if not place.is_main:
            for _ in chunks:  # this rank's share of the decoding; rank 0 writes
                pass
            return
        landing = Landing(model, targets)
        produced = emit_chunks(model, summary.watch(landing.watch(chunks)), output, **write_options)
        if produced < count:
            click.echo(
                f"note: found only {produced:,} of {count:,} items that pass the filters", err=True
            )
        landing.report()
        click.echo(summary.line(), err=True)


class Summary:
    """The one line ``polyvae sample`` ends with: how many items, and what the domain can tell of
    them. Valid: the domain judges validity (:meth:`Domain.is_valid`). Unique: distinct items,
    for items that are text (SMILES, sentences; continuous samples such as images are all
    distinct). Novel: the share of the valid items absent from the training data, where the
    run's codec can tell (``codec.novel(items)``, one flag per item)."""

    def __init__(self, model: Any) -> None:
        from polyvae.domain import Domain
        from polyvae.model import SamplingTally

        self.domain = model.domain
        self.judges_validity = type(self.domain).is_valid is not Domain.is_valid
        self.novel = getattr(model.codec, "novel", None)
        self.count = self.valid = self.novel_count = 0
        # What sampling decoded, when it kept only the valid items.
        self.tally = SamplingTally()
        self.distinct: set[str] | None = set()  # None once an item is not text

    def watch(self, chunks: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        for chunk in chunks:
            self.add(chunk)
            yield chunk

    def add(self, items: Sequence[Any]) -> None:
        self.count += len(items)
        valid = [item for item in items if self.domain.is_valid(item)]
        self.valid += len(valid)
        if self.novel is not None and valid:
            self.novel_count += int(np.count_nonzero(self.novel(valid)))
        if self.distinct is not None and all(isinstance(item, str) for item in items):
            self.distinct.update(items)
        else:
            self.distinct = None

    def line(self) -> str:
        shares = []
        if self.tally.drawn:
            shares.append(
                f"{_percent(self.tally.valid, self.tally.drawn)} of {self.tally.drawn:,} decoded "
                "were valid"
            )
        elif self.judges_validity:
            shares.append(f"{_percent(self.valid, self.count)} valid")
        if self.distinct is not None:
            shares.append(f"{_percent(len(self.distinct), self.count)} unique")
        if self.novel is not None:
            shares.append(f"{_percent(self.novel_count, self.valid)} novel")
        counted = f"sampled {plural(self.count, 'item')}"
        return f"{counted}: {', '.join(shares)}" if shares else counted


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


class Landing:
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


def domain_options(options: Sequence[Option], args: Sequence[str], domain: str) -> dict[str, Any]:
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


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UserError(f"condition {name}: {value!r} is not a number") from None
