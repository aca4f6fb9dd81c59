"""Intelligent search: clips by text (scene descriptions) or by a look-alike frame (image
embeddings), over a per-day embedding index in the lake; contact sheets and MCAP cuts."""
