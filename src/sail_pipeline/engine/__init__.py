"""The experiment engine: one stage (`stage`), a chain of stages with its evaluations
(`chain`), the store that reuses a finished chain by identity (`store`), and experiments as
grids of points plus an analysis (`experiment`). No Kedro here: the Kedro nodes, the sweep
points and the selection points all call it."""
