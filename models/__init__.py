"""Portrait analysis, motion generation and rendering. `motion` is the contract between all parts."""
