"""Files, stores and tables: image decoding, drop sources, the content-addressed store, atomic writes, paths, the warehouse."""
