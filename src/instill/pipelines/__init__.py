"""Pipelines: what combines stages (data, models, train, eval) into one command.

`quickstart.py` builds the built-in suite, evaluates the base model, tunes it and evaluates it
again; self-instruct synthesis with a teacher model (`synth.py`) will live here too. Pipelines
sit above every stage in the import order and below only the command line.
"""
