"""The rules of each endpoint: plans (checks and defaults) and plain reference folds."""
