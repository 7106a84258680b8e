"""`fp8doctor inspect --model`: which of the user's Linear layers each FP8 path takes, the FLOPs it covers, and a
roofline estimate of the speed-up on a named GPU, from the model's config alone (built on the meta device)."""
