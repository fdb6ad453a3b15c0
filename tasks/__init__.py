"""medsafe stages and their workers, one package per capability; imports point down: core <- prepare, risk,
reward, model <- train, evaluate.
"""
