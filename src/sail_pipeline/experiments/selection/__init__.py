"""SAIL-VL's SFT data experiments (quality, composition, incremental evaluation, and the
curriculum-vs-all-in-one schedule): grids and analyses in `registry`, run by the engine."""
