"""The truncation-map lens: a ReLU network as maps of its input space onto itself (see ../shared/TRUNCATION.md)."""
