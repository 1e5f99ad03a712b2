"""The data root: its layout, install records, partials, state, locks, ownership,
removal and pruning."""
