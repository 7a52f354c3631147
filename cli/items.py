"""Items in and out of the commands: read from --data or the command line, printed or written."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from polyvae.errors import UserError
from polyvae.wording import plural


def read(model: Any, data: Path) -> list[Any]:
    """Every item of ``data``; what the domain's reader skipped is reported on stderr."""
    from polyvae.dataset import read_items

    items, report = read_items(model.domain, data, model.config | {"max_items": 0})
    if report.skipped:
        click.echo(report.summary(), err=True)
    return items


def held_out(model: Any, data: Path | None) -> tuple[list[Any], list[Any]]:
    """(training items, for novelty; held-out items): --data is held out, else the run's own
    validation split. Without the run's data at hand, training items are empty."""
    training: list[Any] = []
    try:
        training, held = model.data_splits()
    except UserError:
        if data is None:
            raise
    if data is not None:
        held = read(model, data)
    return training, held


def inputs(model: Any, items: Sequence[str], data: Path | None) -> list[Any]:
    """The items given on the command line, or read from --data."""
    if data is not None and items:
        raise UserError("give items on the command line or --data, not both")
    if data is not None:
        return read(model, data)
    if not items:
        raise UserError("no items: give them on the command line or with --data")
    return [model.domain.parse_item(text) for text in items]


def emit(model: Any, items: Sequence[Any], output: Path | None, **write_options: Any) -> None:
    emit_chunks(model, [items], output, **write_options)


def emit_chunks(
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
    click.echo(f"wrote {plural(count, 'item')} to {written or output}", err=True)
    return count
