"""decayrec: a nightly batch recommender with dynamic interest decay."""

__version__ = "0.1.0"
