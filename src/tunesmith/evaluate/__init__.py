"""`tunesmith eval` (eval loss/perplexity, multiple-choice and exact-answer benchmarks, BLEU/ROUGE-L, blind A/B
with a model or human judge, one report) and `tunesmith sweep` (short runs ranked by eval loss)."""
