"""Work done before deployment: training (split, clustering, expert search, selection), the backtest,
forecast metrics and plots. Only this package imports Optuna; the operator never imports it."""
