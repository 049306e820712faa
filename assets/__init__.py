"""Asset definitions, one module per stage. Each asset is thin: read inputs, call synthdata, write, report."""
