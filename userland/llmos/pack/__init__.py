"""Model packs: a manifest plus a zstd-compressed archive of the model's files."""
