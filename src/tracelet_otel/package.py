# Either library satisfies the instrumentation (tracelet_otel.instrumentor); keep in step with the instruments-any
# extra in pyproject.toml.
_instruments_any = ("torch >= 2.1", "tensorboardX >= 2.6")
