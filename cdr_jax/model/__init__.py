"""Models: the drug and cell encoders, the fusion models and their factory."""
