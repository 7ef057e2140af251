"""Small, fast backtest settings shared by the backtest tests."""

SHORT_ARGS = [
    "--symbols", "AAPL,MSFT,KO,XOM,JPM",
    "--start", "2022-09-01", "--end", "2022-12-28",
    "--top-n", "3", "--lookback", "20", "--history", "60", "--refit-every", "10",
    "--quiet",
]
