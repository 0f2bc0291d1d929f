"""The contestants users would pick instead of LLM OS, written the way they would write them."""
