"""Market data: instrument master, OHLCV store, importer (``python -m core.marketdata``)."""
