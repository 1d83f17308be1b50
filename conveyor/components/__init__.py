"""The standard components, one module each, with TFX's names."""
