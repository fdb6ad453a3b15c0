"""The safety reward: bilingual rules, the rule-based scorer, the teacher judge with its cache, and `medsafe
score`. No torch, no Prefect.
"""
