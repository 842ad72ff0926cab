"""The polytope lens: activation patterns, the exact region of a point, exact partitions of segments,
2-D slices and the input box, and the polytope lens paper's three predictions."""
