"""Training code for the engine's own models (run on a GPU machine; tiny sizes run on CPU in tests)."""
