"""Data loading: drug response, cell-line representations and their sources."""
