"""The keyword engine: normalisation, the catalog, matching, language, replies."""
