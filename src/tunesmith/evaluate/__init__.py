"""`tunesmith eval`: eval loss/perplexity, multiple-choice and exact-answer benchmarks, BLEU/ROUGE-L, one report."""
