"""Diffusion: noise schedules, the denoiser (prediction types, guidance, thresholding), sampling."""
