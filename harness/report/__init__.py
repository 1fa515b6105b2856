"""Reports read results and traces: terminal text, JSON results file, HTML."""
