"""Dataset formats and loaders: the ArrayRecord shard format (`shards`) and grain pipelines (`loaders`)."""
