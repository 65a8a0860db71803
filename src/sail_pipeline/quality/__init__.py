"""Caption quality: per-sample signals, dataset statistics and filter rules."""
