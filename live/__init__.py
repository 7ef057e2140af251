"""The live trading cycle's supporting parts; ``live.cycle.run()`` puts them together top to bottom
(``lambda_function.py`` is only the handler and the command-line entry).

Modules: ``cycle`` (one trading cycle, ``run``), ``config`` (settings from environment variables), ``secrets`` (Alpaca keys from env, Secrets Manager or
SSM), ``schedule`` (trading date, 15-minute slot, allowed window), ``orders`` (client order ids, limits,
reconciliation, idempotent submission), ``journal`` (one JSON record per cycle, local file or S3), ``logs``
(structured JSON log lines with secrets redacted), ``components`` (provider, broker and journal from the config),
``cli`` (``python lambda_function.py``).
"""
