"""`python -m sdedit ...`: the CPU thread policy first (OpenMP reads it when torch loads), then the CLI."""

from . import threads

threads.apply()

from .cli import main  # noqa: E402  (after the thread policy, on purpose)

if __name__ == "__main__":
    raise SystemExit(main())
