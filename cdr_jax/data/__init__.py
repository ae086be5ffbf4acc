"""Data: reading the DeepCDR files and building drug and cell-line representations."""
