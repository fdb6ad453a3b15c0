"""Raw data to training-ready splits: download, cleanup, near-duplicate removal, train/val/test and red-team
splits, RL prompt sampling.
"""
