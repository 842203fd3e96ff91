"""Device-agnostic training and inference: one loop, callbacks, and one recipe per task."""
