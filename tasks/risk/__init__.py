"""Clinical risk labels for questions: the lexicon, its term matcher, the classifier and the parallel
labelling stage.
"""
