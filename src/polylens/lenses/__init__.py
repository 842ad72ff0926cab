"""The lenses of polylens: families of analyses, each a folder, each lens one registration."""
