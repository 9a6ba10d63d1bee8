"""tunesmith: fine-tune and run large language models on your own hardware."""

__version__ = "0.1.0"
