"""Meta-training tooling: run configs (`training/configs/`) and the offline GPU kit (`training/gpu/`)."""
