"""Model wrappers: models that hold a model and change or reuse its predictions (caching, ...)."""
