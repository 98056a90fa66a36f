"""Evaluation: the scene parser, its self-test, and GenEval-style scoring of generated images."""
