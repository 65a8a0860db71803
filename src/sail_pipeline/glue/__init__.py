"""The Kedro glue: the project's context, hooks, parameter validation, datasets, dry runs,
output locks, run timing, the catalog outside a run, and the command-line tools (`cli`).

The layer above the experiments and the library: nothing below imports it (the import
contract in pyproject.toml, checked by `make test`)."""
