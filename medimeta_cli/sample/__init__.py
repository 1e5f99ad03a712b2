"""Few-shot episodes, stratified per-class subsets and contact sheets."""
