"""Data-size scaling sweeps: planning, points, law fitting, plots and the reproduction report."""
