"""Where per-batch work runs: in this process (`plain`) or on Ray Data (`ray`), same results.

A batch function takes a DataFrame of rows and returns one output row per input row, in order.
Its input columns hold plain Python values (bytes, str, int, lists) with None for missing, on
either executor, so the function cannot tell where it runs. A stateful function (one holding
a model) is a class: it is built once per worker (once here, once per actor on Ray) and its
instances are called with each batch. On Ray, tables cross to the workers as Arrow, so each
column must hold one type (and ints must fit in 64 bits).

    out = map_batches(table, functools.partial(fn, settings=s), ExecutorParams(kind="ray"))

Everything order-dependent (dedup, shard bookkeeping) stays with the caller, which receives
the outputs in input order whatever order the workers finished in.

This module imports neither pandas nor ray at load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sail_pipeline.schema.executor import ExecutorParams

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

BatchFn = Callable[["pd.DataFrame"], "pd.DataFrame"]
RAY_MISSING = ('executor "ray" needs Ray Data, which is an optional extra: '
               'pip install -e ".[ray]"  (or: pip install "ray[data]")')
# Added to the table on Ray to put outputs back in input order; the batch function never sees it.
_POSITION = "__position"


def import_ray() -> Any:
    """The `ray` module with Ray Data loaded, or an ImportError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks its dependencies)
    except ImportError as error:
        raise ImportError(RAY_MISSING) from error
    return ray


def ensure_ray(settings: ExecutorParams) -> Any:
    """Ray, initialised once per process: later calls (the next stage) reuse it."""
    ray = import_ray()
    if not ray.is_initialized():
        if settings.ray_address is None:
            # "local": a new Ray in this process. Without it, ray.init joins the cluster that
            # /tmp/ray/ray_current_cluster names, and waits on it when that cluster is gone.
            ray.init(address="local", num_cpus=settings.num_cpus, include_dashboard=False)
        else:
            ray.init(address=settings.ray_address)
    return ray


def _column(values: list[Any]) -> pd.Series:
    import pandas as pd

    # NaN and pd.NA are how pandas spells a missing str or int; the contract says None.
    return pd.Series([None if v is None or v is pd.NA or (isinstance(v, float) and v != v)
                      else v for v in values], dtype=object)


def python_frame(data: pd.DataFrame | pa.Table) -> pd.DataFrame:
    """Object columns of plain Python values, None for missing: what a batch function sees.

    Pandas 3 infers string dtypes (NaN for missing) and Ray hands out Arrow-backed columns
    (pd.NA, numpy arrays for lists); normalising both ways gives a batch function the same
    values on either executor, and its caller the same outputs.
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        columns = {name: _column(data[name].tolist()) for name in data.columns}
    else:  # Arrow's to_pylist already gives lists as lists and bytes as bytes
        columns = {name: _column(data.column(name).to_pylist()) for name in data.column_names}
    return pd.DataFrame(columns, index=pd.RangeIndex(len(data)))


def _apply(call: BatchFn, batch: pd.DataFrame, fn: object) -> pd.DataFrame:
    out = call(batch)
    if len(out) != len(batch):
        raise RuntimeError(f"batch function {fn!r} returned {len(out)} rows for {len(batch)}: "
                           "it must return one row per input row, in order")
    return python_frame(out)


def _with_position(table: pa.Table, fn: BatchFn) -> pd.DataFrame:
    batch = python_frame(table)
    positions = batch.pop(_POSITION)
    out = _apply(fn, batch, fn)
    out[_POSITION] = positions.astype("int64").to_numpy()
    return out


class _Task:
    """A stateless batch function as a Ray task; a callable object so it pickles with its fn."""

    def __init__(self, fn: BatchFn) -> None:
        self.fn = fn

    def __call__(self, table: pa.Table) -> pd.DataFrame:
        return _with_position(table, self.fn)


class _Actor:
    """A stateful batch function as a Ray actor: the inner class is built in the actor."""

    def __init__(self, cls: type, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.fn = cls(*args, **kwargs)

    def __call__(self, table: pa.Table) -> pd.DataFrame:
        return _with_position(table, self.fn)


def _plain(table: pd.DataFrame, fn: BatchFn | type, batch_size: int,
           args: Sequence[Any], kwargs: Mapping[str, Any]) -> Iterator[pd.DataFrame]:
    call = fn(*args, **kwargs) if isinstance(fn, type) else fn
    for start in range(0, len(table), batch_size):
        yield _apply(call, python_frame(table.iloc[start:start + batch_size]), fn)


@contextmanager
def _ordered_execution(ray: Any) -> Iterator[None]:
    # Ray then emits blocks in input order, which keeps the reorder buffer below small; the
    # buffer, not this flag, is what guarantees the order.
    options = ray.data.DataContext.get_current().execution_options
    before = options.preserve_order
    options.preserve_order = True
    try:
        yield
    finally:
        options.preserve_order = before


def _ray(table: pd.DataFrame, fn: BatchFn | type, batch_size: int, settings: ExecutorParams,
         args: Sequence[Any], kwargs: Mapping[str, Any]) -> Iterator[pd.DataFrame]:
    ray = ensure_ray(settings)
    numbered = table.reset_index(drop=True)
    numbered[_POSITION] = range(len(numbered))
    # One block per batch: a single block would be processed by a single task, serially.
    blocks = [numbered.iloc[start:start + batch_size]
              for start in range(0, len(numbered), batch_size)]
    options: dict[str, Any] = {"batch_format": "pyarrow", "batch_size": batch_size}
    if settings.num_gpus:
        options["num_gpus"] = settings.num_gpus
    if isinstance(fn, type):
        options |= {"fn_constructor_args": (fn, tuple(args), dict(kwargs)),
                    "compute": ray.data.ActorPoolStrategy(size=settings.concurrency)}
        mapper: Any = _Actor
    else:
        mapper = _Task(fn)
    with _ordered_execution(ray):
        dataset = ray.data.from_pandas(blocks).map_batches(mapper, **options)
        stream = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
        yield from in_input_order((python_frame(block) for block in stream), len(numbered),
                                  batch_size)


def in_input_order(blocks: Iterator[pd.DataFrame], n_rows: int, batch_size: int
                   ) -> Iterator[pd.DataFrame]:
    """Output blocks in any order and grouping (each row tagged with its input position) →
    one frame per input batch of `batch_size` rows, in input order, without the tag.

    Holds a row only until its batch is whole, so with Ray emitting in order it holds little.
    """
    import pandas as pd

    columns: list[str] = []
    pending: dict[int, list[Any]] = {}  # position → output row
    starts = range(0, n_rows, batch_size)
    for start in starts:
        wanted = range(start, min(start + batch_size, n_rows))
        while not all(p in pending for p in wanted):
            block = next(blocks, None)
            if block is None:
                raise RuntimeError(f"no output came back for rows {start} to {wanted[-1]}")
            positions = block[_POSITION]
            columns = [c for c in block.columns if c != _POSITION]
            for position, row in zip(positions, block[columns].itertuples(index=False),
                                     strict=True):
                pending[int(position)] = list(row)
        rows = [pending.pop(p) for p in wanted]
        if start == starts[-1]:
            # Run the stream to its end before the last yield, which a caller may never
            # resume: Ray then finishes the execution and frees its actors' CPUs.
            leftover = sum(1 for _ in blocks)
            if leftover or pending:
                raise RuntimeError(f"{leftover} block(s) and {len(pending)} row(s) came back "
                                   "beyond the input")
        yield pd.DataFrame({name: pd.Series([row[i] for row in rows], dtype=object)
                            for i, name in enumerate(columns)}, index=pd.RangeIndex(len(rows)))


def iter_map_batches(table: pd.DataFrame, fn: BatchFn | type, settings: ExecutorParams, *,
                     batch_size: int | None = None, fn_constructor_args: Sequence[Any] = (),
                     fn_constructor_kwargs: Mapping[str, Any] | None = None
                     ) -> Iterator[pd.DataFrame]:
    """`fn`'s output for each consecutive batch of `table`, one frame per batch, in order.

    Lazy on both executors: a caller writing results as they come (recaptioning's shards)
    keeps everything that finished if the run is killed.
    """
    size = batch_size or settings.batch_size
    kwargs = dict(fn_constructor_kwargs or {})
    if (fn_constructor_args or kwargs) and not isinstance(fn, type):
        raise TypeError("fn_constructor_args are for a class; a function takes none")
    if settings.kind == "ray":
        import_ray()  # now, not at the first batch: a missing extra fails before any work
    if len(table) == 0:
        return iter(())
    if settings.kind == "plain":
        return _plain(table, fn, size, fn_constructor_args, kwargs)
    return _ray(table, fn, size, settings, fn_constructor_args, kwargs)


def map_batches(table: pd.DataFrame, fn: BatchFn | type, settings: ExecutorParams, *,
                batch_size: int | None = None, fn_constructor_args: Sequence[Any] = (),
                fn_constructor_kwargs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """`fn` over `table` in batches, on the chosen executor; one output row per input row."""
    import pandas as pd

    frames = list(iter_map_batches(table, fn, settings, batch_size=batch_size,
                                   fn_constructor_args=fn_constructor_args,
                                   fn_constructor_kwargs=fn_constructor_kwargs))
    if not frames:
        return pd.DataFrame(index=pd.RangeIndex(0))
    return pd.concat(frames, ignore_index=True)
