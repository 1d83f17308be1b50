"""Arrow kernels for data: statistics, schema inference, anomalies, skew and drift."""
