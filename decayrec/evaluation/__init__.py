"""Evaluation: the backtest (the nightly on a split), metrics, tune, the gate and the
publish check."""
