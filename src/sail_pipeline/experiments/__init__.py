"""The experiments: the data-size sweep (`scaling`) and the SFT data experiments, the
curriculum-vs-all-in-one schedule among them (`selection`); each a grid of points and an
analysis on the engine (`sail_pipeline.engine`). Below the Kedro glue, above the library."""
