"""Training: one cascade stage per run through Hugging Face Accelerate."""
