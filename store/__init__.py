"""Everything podci keeps in Redis: build records, their indexes and due times, metrics, and the name of
every key (`store.keys`). Used by the receiver, the workers, the pages and the CLI alike."""
