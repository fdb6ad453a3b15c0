"""Evaluation: generating predictions, metrics against the four targets, comparison across models, and the
rendered report.
"""
