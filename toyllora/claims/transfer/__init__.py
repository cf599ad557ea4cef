"""The transfer rung: the flaws measured again on a small pre-trained transformer."""
