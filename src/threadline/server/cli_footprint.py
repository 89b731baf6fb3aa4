"""``threadline doctor``'s disk report: bytes on disk per span and per table (store/footprint.py)."""

from __future__ import annotations

import click


def report_footprint(url: str) -> None:
    """Print the database's size, bytes per span and the largest tables (reads only)."""
    from sqlalchemy.exc import SQLAlchemyError

    from threadline.server.store.engine import Store
    from threadline.server.store.footprint import measure

    store = Store(url, pool_size=1)
    try:
        with store.read() as conn:
            footprint = measure(conn)
    except SQLAlchemyError as exc:
        click.echo(f"disk       cannot measure: {str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}")
        return
    finally:
        store.dispose()
    click.echo(f"disk       {footprint.total / 1024**2:,.1f} MiB, {footprint.spans:,} spans"
               + (f", {footprint.per_span():,.0f} bytes per span" if footprint.spans else "")
               + f" ({footprint.method})")
    for name, size in list(footprint.tables.items())[:8]:
        per_span = f"{footprint.per_span(size):>8,.0f} B/span" if footprint.spans else ""
        click.echo(f"  {name:<16} {size / 1024**2:>10,.1f} MiB {per_span}")
