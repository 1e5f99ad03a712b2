"""An installed dataset: its format, its description, images, labels and splits,
its checks and verification, and selections of it."""
