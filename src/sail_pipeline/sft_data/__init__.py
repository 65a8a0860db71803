"""SFT data: the candidate sets, their validation, the mixtures drawn from them, and the
accounting of every row (kept, or rejected with a reason)."""
