"""Deploy ProphetTrend to AWS Lambda with one repeatable command: ``python -m deploy build|up|invoke|logs|status|down``.

Modules: ``config`` (settings), ``function_zip`` and ``layer`` (the two zips), ``zipfiles`` (reproducible zips),
``aws`` (clients), ``up``/``down``/``status``/``ops`` (the commands), ``policies`` (IAM documents).
"""
