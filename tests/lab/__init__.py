"""The lab (`sdedit/lab/`, `benchmarks/`): data, training, evaluation, metrics and the records behind the docs."""
